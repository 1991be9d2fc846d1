"""Outbound REGISTER with digest credentials to a registrar (SIPp plays the registrar)."""

from __future__ import annotations

import subprocess
from typing import Callable

from tests.conftest import SCENARIOS, need
from tests.support.gateway import Gateway, free_port, wait_until


def registrar(port: int, user: str, password: str, expires: int, workdir: str) -> subprocess.Popen[str]:
    need("sipp")
    argv = ["sipp", "-sf", str(SCENARIOS / "uas_registrar.xml"), "-i", "127.0.0.1", "-p", str(port),
            "-key", "auth_user", user, "-key", "auth_pass", password, "-key", "expires", str(expires),
            "-m", "1", "-timeout", "60s", "-timeout_error", "-nostdin", "-trace_err"]
    return subprocess.Popen(argv, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def register_config(port: int, password: str) -> dict[str, object]:
    return {"register": {"enabled": True, "registrar": f"sip:127.0.0.1:{port}", "aor": "sip:alice@127.0.0.1",
                         "username": "alice", "password": password, "realm": "*", "expires_s": 10}}


def test_registers_with_digest_auth_and_refreshes_before_expiry(
    gateway_factory: Callable[..., Gateway], tmp_path: object
) -> None:
    port = free_port()
    sipp = registrar(port, "alice", "s3cret", 10, str(tmp_path))
    try:
        gw = gateway_factory(sip=register_config(port, "s3cret"))
        wait_until(lambda: gw.metric("talkover_registration_up", 'aor="sip:alice@127.0.0.1"') == 1, 15, "registered")
        assert gw.metric("talkover_registration_status_code", 'aor="sip:alice@127.0.0.1"') == 200
        out, _ = sipp.communicate(timeout=40)  # passes only after the refresh REGISTER verified
        assert sipp.returncode == 0, out[-3000:]
        assert len(gw.log_events("registration", code=200)) >= 2
    finally:
        if sipp.poll() is None:
            sipp.kill()


def test_wrong_password_is_refused_and_shows_in_metrics(
    gateway_factory: Callable[..., Gateway], tmp_path: object
) -> None:
    port = free_port()
    sipp = registrar(port, "alice", "s3cret", 10, str(tmp_path))
    try:
        gw = gateway_factory(sip=register_config(port, "wrong"))
        wait_until(lambda: gw.metric("talkover_registration_status_code", 'aor="sip:alice@127.0.0.1"') == 403,
                   15, "403 from the registrar")
        assert gw.metric("talkover_registration_up", 'aor="sip:alice@127.0.0.1"') == 0
        assert gw.health()[0] == 200  # calls may still arrive by IP; the gateway keeps serving
    finally:
        sipp.kill()
        sipp.communicate(timeout=10)
