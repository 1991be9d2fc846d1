"""A real Kamailio (gateway/supervisor/kamailio.py) in front of real SIP peers.

The stand-in workers are scriptable pjsua2 phones (tests/support/phone.py) that auto-answer
one call at a time (a second INVITE gets 486, like a full pjsua2 worker) and answer OPTIONS
as any pjsua2 endpoint does. Callers are phones too; everything runs on 127.0.0.1.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.config import KamailioConfig
from gateway.supervisor.kamailio import FrontDoor, Kamailio, WorkerAddress
from gateway.supervisor.kamailio_rpc import Destination, sip_options_status
from tests.support.gateway import free_port, wait_until
from tests.support.phone_client import Phone

pytestmark = [
    pytest.mark.skipif(shutil.which("kamailio", path="/usr/sbin:/usr/bin") is None, reason="kamailio not installed"),
    pytest.mark.timeout(120),
]

PING_S = 1
NO_ANSWER_S = 1.0
# a dead worker is noticed at the first OPTIONS after its death that times out
DETECT_S = PING_S + NO_ANSWER_S + 2.0


def front_door(tmp_path: Path, workers: list[Phone], priorities: list[int] | None = None,
               calls_per_worker: int = 1, **settings: Any) -> Kamailio:
    settings = {"ping_interval_s": PING_S, "no_answer_s": NO_ANSWER_S, **settings}
    prio = priorities or [0] * len(workers)
    door = FrontDoor(
        listen_host="127.0.0.1",
        listen_port=free_port(),
        workers=[WorkerAddress("127.0.0.1", w.port, f"w{i}", prio[i]) for i, w in enumerate(workers)],
        transports=["udp"],
        calls_per_worker=calls_per_worker,
        settings=KamailioConfig(**settings),
    )
    return Kamailio(door, tmp_path / "kamailio")


def uri_of(phone: Phone) -> str:
    return f"sip:127.0.0.1:{phone.port}"


def door_uri(kam: Kamailio, user: str = "1000") -> str:
    return f"sip:{user}@127.0.0.1:{kam.door.listen_port}"


def all_active(kam: Kamailio) -> list[Destination]:
    return wait_until(
        lambda: (d := kam.rpc.destinations()) and all(x.state == "active" for x in d) and d,
        timeout=DETECT_S, what="every worker active",
    )


def kill(phone: Phone) -> None:
    """SIGKILL the phone process: a worker that dies without a word."""
    phone._proc.kill()
    phone._proc.wait(timeout=5)
    phone.close()


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[Kamailio, Phone, Phone]]:
    with Phone(answer=True, user="a") as a, Phone(answer=True, user="b") as b:
        kam = front_door(tmp_path, [a, b])
        with kam:
            all_active(kam)
            yield kam, a, b


def callee_of(call_id: str, *phones: Phone, timeout: float = 5.0) -> Phone:
    """The worker phone whose incoming_call carries this Call-ID."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in phones:
            try:
                p.wait_for("incoming_call", lambda e: e["call_id"] == call_id, timeout=0.05)
                return p
            except TimeoutError:
                continue
    raise AssertionError(f"no worker saw call {call_id}")


def test_calls_spread_and_in_dialog_requests_reach_their_worker(two_workers: tuple[Kamailio, Phone, Phone]) -> None:
    kam, a, b = two_workers
    with Phone(user="c0") as c0, Phone(user="c1") as c1:
        id0 = c0.call(door_uri(kam))["call_id"]
        c0.wait_state("CONFIRMED")
        id1 = c1.call(door_uri(kam))["call_id"]
        c1.wait_state("CONFIRMED")
        w0, w1 = callee_of(id0, a, b), callee_of(id1, a, b)
        assert {w0, w1} == {a, b}, "call-load dispatching put both calls on one worker"
        assert sorted(d.load for d in kam.rpc.destinations()) == [1, 1]

        # hold and resume (re-INVITEs) reach the worker that holds the call, and only it
        c0.hold("sendonly")
        w0.wait_for("media_state", lambda e: e["status"] == "REMOTE_HOLD", timeout=5)
        c0.wait_for("media_state", lambda e: e["status"] == "LOCAL_HOLD", timeout=5)  # re-INVITE done
        c0.unhold()
        w0.wait_for("media_state", lambda e: e["status"] == "ACTIVE" and e["dir"] == "sendrecv", timeout=5)
        assert not [e for e in w1.drain() if e["event"] == "media_state" and e["status"] == "REMOTE_HOLD"]

        # BYE from the caller reaches its worker; BYE from a worker reaches its caller
        c0.hangup()
        w0.wait_for("call_state", lambda e: e["call_id"] == id0 and e["state"] == "DISCONNECTED", timeout=5)
        w1.hangup()
        c1.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=5)
        wait_until(lambda: all(d.load == 0 for d in kam.rpc.destinations()), 5, "loads back to 0 after the BYEs")


def test_cancel_while_ringing_reaches_the_worker(tmp_path: Path) -> None:
    with Phone(answer=True, ring_ms=10_000, user="slow") as w, Phone(user="c") as c:
        with front_door(tmp_path, [w]) as kam:
            all_active(kam)
            call_id = c.call(door_uri(kam))["call_id"]
            w.wait_for("incoming_call", lambda e: e["call_id"] == call_id, timeout=5)
            c.wait_state("EARLY")
            c.hangup()  # CANCEL
            end = w.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=5)
            assert end["last_status_code"] == 487
            assert c.wait_state("DISCONNECTED")["last_status_code"] == 487
            wait_until(lambda: kam.rpc.destinations()[0].load == 0, 5, "the CANCEL took the load off")


def test_worker_answering_503_fails_over_to_the_next(tmp_path: Path) -> None:
    with Phone(answer=True, answer_code=503, user="draining") as refusing, Phone(answer=True, user="ok") as ok:
        kam = front_door(tmp_path, [refusing, ok], priorities=[1, 0])  # the refusing one is tried first
        with kam, Phone(user="c") as c:
            all_active(kam)
            call_id = c.call(door_uri(kam))["call_id"]
            c.wait_state("CONFIRMED")
            refusing.wait_for("incoming_call", lambda e: e["call_id"] == call_id, timeout=5)
            ok.wait_for("incoming_call", lambda e: e["call_id"] == call_id, timeout=5)
            assert all(d.state == "active" for d in kam.rpc.destinations()), "a 503 must not mark a worker down"
            assert "last reply 503" in kam.log_path.read_text()


def test_full_worker_486_fails_over_and_all_full_gives_503(tmp_path: Path) -> None:
    """pjsua2 answers 486 by itself once it holds its maximum of calls (here: 1)."""
    with Phone(answer=True, user="x") as x, Phone(answer=True, user="y") as y:
        # Kamailio's own call count would keep it away from a worker it knows is full;
        # calls placed on x directly make x full behind its back, like calls it took
        # before a restart of the front door.
        kam = front_door(tmp_path, [x, y], priorities=[1, 0], calls_per_worker=4)
        with kam, Phone(user="direct-x") as dx, Phone(user="direct-y") as dy:
            all_active(kam)
            dx.call(uri_of(x).replace("sip:", "sip:1000@"))
            dx.wait_state("CONFIRMED")
            for i in range(2):
                with Phone(user=f"c{i}") as c:
                    call_id = c.call(door_uri(kam))["call_id"]
                    c.wait_state("CONFIRMED")
                    y.wait_for("incoming_call", lambda e: e["call_id"] == call_id, timeout=5)
                    c.hangup()
                    y.wait_state("DISCONNECTED")
            assert kam.log_path.read_text().count("last reply 486") == 2, "x (tried first) did not answer 486 twice"

            dy.call(uri_of(y).replace("sip:", "sip:1000@"))
            dy.wait_state("CONFIRMED")
            with Phone(user="late") as late:
                late.call(door_uri(kam))
                end = late.wait_state("DISCONNECTED")
            assert (end["last_status_code"], end["reason"]) == (503, "All workers busy")
            assert all(d.load == 0 for d in kam.rpc.destinations()), "a refused call left load behind"


def test_dead_worker_is_skipped_marked_down_and_back_when_it_answers(tmp_path: Path) -> None:
    with Phone(answer=True, user="a") as a, Phone(answer=True, user="b") as b:
        kam = front_door(tmp_path, [a, b])
        with kam:
            all_active(kam)
            port = a.port
            killed_at = time.monotonic()
            kill(a)
            down = kam.rpc.wait_for(f"sip:127.0.0.1:{port}", lambda d: d.state == "inactive", timeout_s=DETECT_S)
            assert down.probing, "a dead worker must stay probed so it can come back"
            detected_s = time.monotonic() - killed_at
            # new calls go to the live worker, without waiting for the dead one
            for i in range(2):
                with Phone(user=f"c{i}") as c:
                    call_id = c.call(door_uri(kam))["call_id"]
                    t0 = time.monotonic()
                    c.wait_state("CONFIRMED")
                    assert time.monotonic() - t0 < NO_ANSWER_S, "a call waited for the dead worker"
                    b.wait_for("incoming_call", lambda e: e["call_id"] == call_id, timeout=5)
                    c.hangup()
                    b.wait_state("DISCONNECTED")
            # the worker restarts on its port and is back at its next answered OPTIONS
            with Phone(port=port, answer=True, user="a2") as a2:
                kam.rpc.wait_for(uri_of(a2), lambda d: d.state == "active", timeout_s=PING_S + 2.0)
            print(f"dead worker marked inactive after {detected_s:.2f} s (ping {PING_S} s, no-answer {NO_ANSWER_S} s)")


def test_call_to_a_worker_that_died_unnoticed_fails_over_on_timeout(tmp_path: Path) -> None:
    """Killed between two health checks: the INVITE times out (no_answer_s) and goes on."""
    with Phone(answer=True, user="a") as a, Phone(answer=True, user="b") as b:
        # ping_interval_s=60: no OPTIONS notices the death before the INVITE does;
        # priorities: the dead worker is tried first
        with front_door(tmp_path, [a, b], priorities=[1, 0], ping_interval_s=60) as kam:
            all_active(kam)
            port = a.port
            kill(a)
            setup_s = []
            for i in range(2):
                with Phone(user=f"c{i}") as c:
                    call_id = c.call(door_uri(kam))["call_id"]
                    t0 = time.monotonic()
                    c.wait_state("CONFIRMED", timeout=NO_ANSWER_S + 8)
                    setup_s.append(time.monotonic() - t0)
                    b.wait_for("incoming_call", lambda e: e["call_id"] == call_id, timeout=5)
                    c.hangup()
                    b.wait_state("DISCONNECTED")
            assert setup_s[0] >= NO_ANSWER_S * 0.9, f"the first call did not wait for the dead worker: {setup_s}"
            assert setup_s[1] < NO_ANSWER_S, f"the second call still tried the dead worker: {setup_s}"
            dead = kam.rpc.destination(f"sip:127.0.0.1:{port}")
            assert dead.state == "inactive" and dead.probing, dead


def test_drain_keeps_the_live_call_and_sends_new_calls_elsewhere(two_workers: tuple[Kamailio, Phone, Phone]) -> None:
    kam, a, b = two_workers
    with Phone(user="c0") as c0, Phone(user="c1") as c1, Phone(user="c2") as c2, Phone(user="c3") as c3:
        id0 = c0.call(door_uri(kam))["call_id"]
        c0.wait_state("CONFIRMED")
        x = callee_of(id0, a, b)
        y = b if x is a else a
        kam.rpc.drain(uri_of(x))
        assert kam.rpc.destination(uri_of(x)).state == "disabled"

        # the drained worker's live call goes on: a re-INVITE and the BYE still reach it
        c0.hold("inactive")
        x.wait_for("media_state", lambda e: e["status"] == "REMOTE_HOLD", timeout=5)
        c0.hangup()
        x.wait_for("call_state", lambda e: e["call_id"] == id0 and e["state"] == "DISCONNECTED", timeout=5)

        # a health check does not undo the drain (disabled destinations are not probed)
        wait_until(lambda: kam.rpc.destination(uri_of(x)).flags == "DX", PING_S + 1, "drained worker not probed")

        # idle but drained: new calls go to the other worker; with it busy, the next gets 503
        id1 = c1.call(door_uri(kam))["call_id"]
        c1.wait_state("CONFIRMED")
        assert callee_of(id1, a, b) is y
        c2.call(door_uri(kam))
        end = c2.wait_state("DISCONNECTED")
        assert (end["last_status_code"], end["reason"]) == (503, "No worker available")
        assert not [e for e in x.drain() if e["event"] == "incoming_call"], "an INVITE reached the drained worker"

        # back in the pool: it takes the next call
        kam.rpc.restore(uri_of(x), verified=False)
        id3 = c3.call(door_uri(kam))["call_id"]
        c3.wait_state("CONFIRMED")
        assert callee_of(id3, a, b) is x


def options_burst(source: str, port: int, count: int, quiet_s: float = 0.5) -> int:
    """Send `count` OPTIONS back to back from `source`; how many got a 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        local = "%s:%d" % sock.getsockname()
        for i in range(count):
            sock.sendto((
                f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKflood{i}\r\n"
                f"Max-Forwards: 70\r\nFrom: <sip:flood@{local}>;tag=f{i}\r\nTo: <sip:127.0.0.1:{port}>\r\n"
                f"Call-ID: flood{i}@{source}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode(),
                ("127.0.0.1", port))
        answered = 0
        sock.settimeout(quiet_s)  # replies arrive within ms; the wait ends at the first silence
        try:
            while True:
                answered += sock.recv(65535).startswith(b"SIP/2.0 200")
        except TimeoutError:
            return answered


def test_flood_limit_spares_the_allow_list(tmp_path: Path) -> None:
    with Phone(answer=True, user="w") as w:
        kam = front_door(tmp_path, [w], flood_requests=5, flood_window_s=2, allow_list=["127.0.0.1/32"])
        with kam:
            port = kam.door.listen_port
            assert options_burst("127.0.0.1", port, 100) == 100, "an allow-listed source was throttled"
            answered = options_burst("127.0.0.2", port, 100)
            # pike blocks a source somewhere between 1x and 3x its per-window density
            assert 5 <= answered <= 3 * 5 + 1, f"{answered} of 100 flooding requests answered"
            assert sip_options_status("127.0.0.1", port, 1.0) == 200, "the allow-listed source is still served"
            assert "flood limit: dropping OPTIONS from 127.0.0.2" in kam.log_path.read_text()


def test_sanity_and_max_forwards(two_workers: tuple[Kamailio, Phone, Phone]) -> None:
    kam, _, _ = two_workers
    port = kam.door.listen_port
    assert sip_options_status("127.0.0.1", port, 1.0, headers={"Max-Forwards": "0"}) == 483
    assert sip_options_status("127.0.0.1", port, 1.0, headers={"CSeq": "1 INVITE"}) == 400  # CSeq method mismatch
    assert sip_options_status("127.0.0.1", port, 1.0, method="MESSAGE") == 405
    assert sip_options_status("127.0.0.1", port, 1.0) == 200


NO_ROUTE_UAC = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac that follows Contact but ignores Record-Route">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:norr@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:norr@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=- 1 1 IN IP4 [local_ip]
s=-
c=IN IP4 [local_ip]
t=0 0
m=audio [auto_media_port] RTP/AVP 0
a=rtpmap:0 PCMU/8000

  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:norr@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <!-- a 180 that Kamailio's UDP workers let the 200 overtake is taken here, not aborted on -->
  <recv response="180" timeout="300" ontimeout="bye"/>
  <label id="bye"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:norr@[local_ip]:[local_port]>;tag=[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 BYE
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
"""


@pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp not installed")
def test_a_caller_ignoring_record_route_still_reaches_its_worker(tmp_path: Path) -> None:
    """A caller that sends ACK and BYE to the worker's Contact without the Route set, through
    the front door (its outbound proxy): relayed to that worker all the same."""
    (tmp_path / "norr.xml").write_text(NO_ROUTE_UAC)
    with Phone(answer=True, user="w") as w, front_door(tmp_path, [w]) as kam:
        all_active(kam)
        argv = ["sipp", "-sf", "norr.xml", "-i", "127.0.0.1", "-p", str(free_port()), "-m", "2", "-l", "1",
                "-timeout", "20s", "-timeout_error", "-nostdin", f"127.0.0.1:{kam.door.listen_port}"]
        done = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=40)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        # SIPp is done once the BYEs' 200s reached it; the phone may report the second
        # disconnect a moment later.
        ended = {w.wait_for("call_state", lambda e: e["state"] == "DISCONNECTED", timeout=10)["call_id"] for _ in range(2)}
        assert len(ended) == 2, ended  # both BYEs reached the worker
        assert kam.rpc.destinations()[0].load == 0, "the BYEs took the load off"
