"""A pool of SIP workers behind a real Kamailio, started by `talkover serve`."""

from __future__ import annotations

import os
import signal
from typing import Callable

import pytest

from tests.conftest import need
from tests.support.gateway import Gateway, wait_until
from tests.support.phone_client import Phone


@pytest.fixture
def pool(gateway_factory: Callable[..., Gateway]) -> Gateway:
    need("kamailio")
    gw = gateway_factory(supervisor={"workers": 2, "drain_s": 3.0}, kamailio={"ping_interval_s": 1})
    # /healthz is up with one SIP worker; these tests need both reporting
    wait_until(lambda: all(w["up"] for w in gw.health()[1]["workers"]), 20, "both workers up")
    return gw


def pids(gw: Gateway) -> dict[str, int]:
    return {w["name"]: w["pid"] for w in gw.health()[1]["workers"] if w["name"].startswith("w")}


def test_calls_through_kamailio_spread_over_the_workers(pool: Gateway) -> None:
    phones = [Phone() for _ in range(4)]
    try:
        for p in phones:
            p.call(pool.uri())
            p.wait_state("CONFIRMED")
        calls = wait_until(lambda: (lambda c: c if len(c) == 4 else None)(pool.calls()), 10, "4 calls in /calls")
        assert {c["worker"] for c in calls} == {"w0", "w1"}
    finally:
        for p in phones:
            p.close()


def test_hold_and_bye_reach_the_worker_that_took_the_call(pool: Gateway) -> None:
    with Phone() as phone:
        phone.call(pool.uri())
        phone.wait_state("CONFIRMED")
        call = pool.only_call()
        phone.hold("sendonly")
        wait_until(lambda: pool.calls()[0]["on_hold"], 10, "hold seen by the worker")
        phone.unhold()
        wait_until(lambda: not pool.calls()[0]["on_hold"], 10, "resume seen by the worker")
        phone.hangup()
        phone.wait_state("DISCONNECTED")
    ended = pool.wait_log("call ended", call_id=call["call_id"])
    assert ended["process"] == call["worker"] and ended["status"] == 200


def test_a_killed_worker_is_skipped_for_new_calls_and_restarted(pool: Gateway) -> None:
    before = pids(pool)
    os.kill(before["w0"], signal.SIGKILL)
    phones = [Phone() for _ in range(3)]
    try:
        for p in phones:  # w0 is dead or just restarting: every call must still be answered
            p.call(pool.uri())
            p.wait_state("CONFIRMED", timeout=15)
        wait_until(lambda: pids(pool)["w0"] not in (None, before["w0"]) and pool.health()[0] == 200, 30,
                   "w0 restarted")
    finally:
        for p in phones:
            p.close()


def test_rolling_restart_under_calls_fails_no_call(pool: Gateway) -> None:
    before = pids(pool)
    with Phone() as live:
        live.call(pool.uri())
        live.wait_state("CONFIRMED")
        assert pool.proc is not None
        pool.proc.send_signal(signal.SIGHUP)
        pool.wait_log("rolling restart: draining")
        for _ in range(3):  # new calls during the restart go to the worker in service
            with Phone() as caller:
                caller.call(pool.uri())
                caller.wait_state("CONFIRMED", timeout=15)
                caller.hangup()
                caller.wait_state("DISCONNECTED")
        pool.wait_log("rolling restart done", timeout=60)
    after = pids(pool)
    assert after["w0"] != before["w0"] and after["w1"] != before["w1"], (before, after)
    failed = [r for r in pool.log_events("call rejected")]
    assert not failed, failed
