"""Several machines on one: network namespaces stand in for hosts on a private LAN.

    caller (10.213.7.10) ──► door (10.213.7.1:5060, Kamailio: kamailio_cli run)
                                 ├─► host a (10.213.7.2): talkover serve, workers :5070 :5071, engine
                                 └─► host b (10.213.7.3): talkover serve, workers :5070 :5071, engine

Each gateway host runs its own `talkover serve` (front_door = false: a pool dispatched by
another host's Kamailio, with the door in its flood allow-list) inside its namespace; the
front door lists the four workers (`[kamailio] workers`). RTP goes straight between the
caller and the worker that took the call. The LAN, its bridge and every namespace are
deleted afterwards, also when the test fails (tests/support/netns.py).
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.supervisor.kamailio_rpc import Destination, KamailioRpc
from tests.conftest import need
from tests.support.gateway import REPO, Gateway, toml_value, wait_until
from tests.support.netns import Host, Lan, remove_stale, unavailable
from tests.support.phone_client import Phone

pytestmark = pytest.mark.timeout(240)

SUBNET = "10.213.7.0/24"  # exists only inside the namespaces below
SIP_PORT, WORKER_PORT = 5060, 5070
PING_S, NO_ANSWER_S = 1, 1.0
DETECT_S = PING_S + NO_ANSWER_S + 3.0  # a dead worker: the first unanswered OPTIONS after its death, + slack
STOP_NOTICE_S = PING_S + NO_ANSWER_S  # a stopped host takes no new call after this
DRAIN_S = 3.0  # longer than STOP_NOTICE_S: one worker draining after another would show


@dataclass
class HostGateway(Gateway):
    """`talkover serve` inside a host's namespace; its HTTP listener is that host's 127.0.0.1."""

    host: Host | None = None

    def command(self) -> list[str]:
        assert self.host is not None
        return self.host.argv(super().command())

    def get(self, path: str) -> tuple[int, bytes]:
        assert self.host is not None
        return self.host.call(lambda: Gateway.get(self, path), timeout=15)


@dataclass
class FrontDoor:
    """`python -m gateway.supervisor.kamailio_cli run` inside the door's namespace."""

    host: Host
    workers: list[str]
    run_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tko-door-")))  # short: ctl.sock
    proc: subprocess.Popen[bytes] | None = None

    def start(self, log_path: Path) -> FrontDoor:
        config = self.run_dir / "frontdoor.toml"
        kam = {"workers": self.workers, "ping_interval_s": PING_S, "no_answer_s": NO_ANSWER_S}
        lines = ["[sip]", f"host = {toml_value(self.host.address)}", f"port = {SIP_PORT}", 'transports = ["udp"]',
                 "[kamailio]", *(f"{k} = {toml_value(v)}" for k, v in kam.items()), "[log]", 'format = "json"']
        config.write_text("\n".join(lines) + "\n")
        argv = [sys.executable, "-m", "gateway.supervisor.kamailio_cli", "run", "--config", str(config),
                "--run-dir", str(self.run_dir)]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(self.host.argv(argv), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        self.rpc = KamailioRpc(str(self.run_dir / "ctl.sock"))  # a path: reachable from any namespace
        return self

    def destinations(self) -> dict[str, Destination]:
        assert self.proc is not None and self.proc.poll() is None, "the front door exited"
        return {d.uri: d for d in self.rpc.destinations()} if (self.run_dir / "ctl.sock").exists() else {}

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return self.proc.returncode if self.proc else None


@dataclass
class Site:
    lan: Lan
    caller: Host
    door: FrontDoor
    a: HostGateway
    b: HostGateway

    def phone(self) -> Phone:
        return Phone(host=self.caller.address, wrap=self.caller.argv([]))

    def uri(self) -> str:
        return f"sip:1000@{self.door.host.address}:{SIP_PORT}"

    def worker_uris(self, gw: HostGateway) -> list[str]:
        assert gw.host is not None
        return [f"sip:{gw.host.address}:{WORKER_PORT + i}" for i in range(2)]


def gateway_host(workdir: Path, host: Host, door: Host) -> HostGateway:
    workdir.mkdir()
    return HostGateway(
        workdir,
        host=host,
        sip={"host": host.address, "flood": {"allow": [f"{door.address}/32"]}},
        supervisor={"workers": 2, "worker_host": host.address, "worker_port": WORKER_PORT, "front_door": False,
                    "drain_s": DRAIN_S},
    )


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    why = unavailable()
    if why:
        pytest.skip(f"network namespaces stand in for hosts here, but: {why}")
    need("kamailio")
    remove_stale()
    lan = Lan(SUBNET)
    started: list[Any] = []
    try:
        door_host, a_host, b_host = lan.add_host("door", 1), lan.add_host("a", 2), lan.add_host("b", 3)
        caller = lan.add_host("caller", 10)
        a = gateway_host(tmp_path / "a", a_host, door_host)
        b = gateway_host(tmp_path / "b", b_host, door_host)
        workers = [f"{h.address}:{WORKER_PORT + i}" for h in (a_host, b_host) for i in range(2)]
        door = FrontDoor(door_host, workers)
        for gw in (a, b):
            started.append(gw)
            gw.start()
        started.append(door.start(tmp_path / "door.log"))
        yield Site(lan, caller, door, a, b)
    finally:
        codes = {}
        for proc in reversed(started):  # every process out of the namespaces before they go
            codes[proc.host.label if isinstance(proc, HostGateway) and proc.host else "door"] = proc.stop()
        problems = lan.close()
        assert not problems, problems
        assert all(code in (0, None) for code in codes.values()), codes


def host_of(site: Site, call_id: str) -> str:
    for name, gw in (("a", site.a), ("b", site.b)):
        if any(c["call_id"] == call_id for c in gw.calls()):
            return name
    return ""


def wait_host_of(site: Site, call_id: str) -> str:
    return wait_until(lambda: host_of(site, call_id), 10, f"call {call_id} in a host's /calls")


def test_calls_spread_over_two_hosts_and_move_off_a_stopped_one(site: Site) -> None:
    wait_until(lambda: len(d := site.door.destinations()) == 4 and all(x.state == "active" for x in d.values()),
               DETECT_S + 10, "the front door's four workers on two hosts active")
    phones: list[Phone] = []
    try:
        placed: dict[str, Phone] = {}
        for _ in range(4):
            phone = site.phone()
            phones.append(phone)
            placed[phone.call(site.uri())["call_id"]] = phone
            phone.wait_state("CONFIRMED", timeout=15)
        hosts = {cid: wait_host_of(site, cid) for cid in placed}
        assert sorted(hosts.values()) == ["a", "a", "b", "b"], hosts  # call-load: one per worker
        for phone in placed.values():  # the chime greeting crossed the LAN from the worker's own address
            wait_until(lambda p=phone: p.stats()["rx_audio_frames"] > 0, 10, "agent audio at the caller")
        on_a = [cid for cid, h in hosts.items() if h == "a"]

        # Host a stops: its supervisor drains all its workers at once (new calls 503 → the door
        # tries host b), within the health-check interval.
        assert site.a.proc is not None
        stopped_at = time.monotonic()
        site.a.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: len(site.a.log_events("draining: new calls get 503")) == 2, STOP_NOTICE_S,
                   "both of a's workers draining")
        during = []
        for _ in range(2):
            phone = site.phone()
            phones.append(phone)
            cid = phone.call(site.uri())["call_id"]
            phone.wait_state("CONFIRMED", timeout=15)
            during.append(cid)
        assert [wait_host_of(site, cid) for cid in during] == ["b", "b"]

        # a's live calls go on through the drain window, then get a BYE from their worker.
        for cid in on_a:
            ended = placed[cid].wait_state("DISCONNECTED", timeout=DRAIN_S + 15)
            assert ended["call_id"] == cid
        took = time.monotonic() - stopped_at
        assert DRAIN_S - 0.5 <= took <= DRAIN_S + 4, took

        # The door notices a's workers are gone within its health check and sends nothing there.
        a_uris = site.worker_uris(site.a)
        dests = wait_until(lambda: (d := site.door.destinations()) and all(d[u].state == "inactive" for u in a_uris) and d,
                           DETECT_S + 10, "a's workers marked inactive by the front door")
        inactive_at = time.time()
        assert site.a.proc.wait(timeout=30) == 0, site.a.log_text()[-3000:]
        exits = [datetime.fromisoformat(r["timestamp"]).timestamp() for r in site.a.log_events("worker stopped")]
        assert len(exits) == 2, exits
        detect_s = inactive_at - max(exits)
        assert detect_s <= DETECT_S, detect_s
        ends = {r["call_id"]: r for r in site.a.log_events("call ended")}
        for cid in on_a:
            assert ends[cid]["reason"] == "drain window over" and ends[cid]["status"] == 200, ends[cid]
        assert all(dests[u].load == 0 for u in a_uris), dests  # the BYEs passed the door: no hung call there
        assert all(dests[u].state == "active" for u in site.worker_uris(site.b)), dests
        after = site.phone()
        phones.append(after)
        cid = after.call(site.uri())["call_id"]
        after.wait_state("CONFIRMED", timeout=15)
        assert wait_host_of(site, cid) == "b"

        # b's calls were never touched.
        b_calls = {c["call_id"] for c in site.b.calls()}
        assert {c for c, h in hosts.items() if h == "b"} | set(during) | {cid} <= b_calls, b_calls
        for c, h in hosts.items():
            if h == "b":
                assert not [e for e in placed[c].drain() if e.get("state") == "DISCONNECTED"]
        print(f"a stopped: its calls ended after {took:.1f} s (drain_s {DRAIN_S}); "
              f"its workers inactive at the door {detect_s:.1f} s after the last one exited")
    finally:
        for phone in phones:
            phone.close()
