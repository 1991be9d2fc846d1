"""Call lifecycles against a real `talkover serve`: who hangs up, limits, crashes, drain."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable

from tests.support.gateway import Gateway, wait_until
from tests.support.phone_client import Phone
from tests.support.sipp import run_sipp


def worker_resources(gw: Gateway) -> dict[str, Any]:
    """What a call could leak in the worker: threads, file descriptors (sockets), media ports."""
    _, health = gw.health()
    w = health["workers"][0]
    pid = int(w["pid"])
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"pid": pid, "threads": len(os.listdir(f"/proc/{pid}/task")), "fds": fds, "free_ports": w["free_ports"]}


def idle_after_warm_up(gw: Gateway) -> dict[str, Any]:
    """The worker's resources once one call has come and gone: shared per-process state made
    on first use (ONNX runtime thread pools, codec tables) is not a per-call leak."""
    with Phone() as phone:
        phone.call(gw.uri())
        phone.wait_state("CONFIRMED")
        phone.hangup()
        phone.wait_state("DISCONNECTED")
    wait_until(lambda: not gw.calls() and gw.metric("talkover_engine_slots_in_use") == 0, 10, "warm-up call gone")
    return wait_until(lambda: _stable(gw), 10, "stable worker resources")


def _stable(gw: Gateway) -> dict[str, Any] | None:
    first = worker_resources(gw)
    time.sleep(0.2)  # two samples apart: a thread still exiting shows as a difference
    return first if worker_resources(gw) == first else None


def settled(gw: Gateway, before: dict[str, Any]) -> dict[str, Any]:
    def same() -> dict[str, Any] | None:
        now = worker_resources(gw)
        return now if now == before and not gw.calls() and gw.metric("talkover_engine_slots_in_use") == 0 else None

    try:
        return wait_until(same, 10, "worker resources back to their idle values")
    except TimeoutError:
        raise AssertionError(f"leak: before {before}, now {worker_resources(gw)}, calls {gw.calls()}")


def test_caller_bye_frees_calls_ports_threads_and_slots(gateway: Gateway) -> None:
    idle = idle_after_warm_up(gateway)
    with Phone() as phone:
        phone.call(gateway.uri())
        phone.wait_state("CONFIRMED")
        gateway.only_call()
        assert worker_resources(gateway)["free_ports"] == idle["free_ports"] - 1
        phone.hangup()
        phone.wait_state("DISCONNECTED")
    settled(gateway, idle)
    assert gateway.metric("talkover_calls_total", 'outcome="answered"') == 2  # with the warm-up call


def test_gateway_bye_at_max_call_length_frees_everything(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(entries=[{"name": "short", "numbers": ["*"], "max_call_s": 1.5}])
    idle = idle_after_warm_up(gw)
    with Phone() as phone:
        phone.call(gw.uri())
        phone.wait_state("CONFIRMED")
        ended = phone.wait_state("DISCONNECTED", timeout=10)  # the gateway's BYE
        assert ended["last_status_code"] in (200, 0) or ended
    assert gw.wait_log("hanging up")["reason"].startswith("max call length")
    settled(gw, idle)


def test_unknown_number_gets_404(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(entries=[{"name": "sales", "numbers": ["1000"]}])
    with Phone() as phone:
        phone.call(gw.uri("2000"))
        ended = phone.wait_state("DISCONNECTED")
    assert ended["last_status_code"] == 404
    assert gw.metric("talkover_calls_total", 'outcome="not_found"') == 1


def test_beyond_the_configured_limit_gets_503(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(sip={"max_calls": 1})
    with Phone() as first, Phone() as second:
        first.call(gw.uri())
        first.wait_state("CONFIRMED")
        second.call(gw.uri())
        ended = second.wait_state("DISCONNECTED")
        assert ended["last_status_code"] == 503
        first.hangup()
    assert gw.wait_log("call rejected", reason="call limit")["status"] == 503


def test_engine_without_a_free_slot_gets_503(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(engine={"slots": 1})
    with Phone() as first, Phone() as second:
        first.call(gw.uri())
        first.wait_state("CONFIRMED")
        second.call(gw.uri())
        assert second.wait_state("DISCONNECTED")["last_status_code"] == 503
        first.hangup()
        first.wait_state("DISCONNECTED")
        second.call(gw.uri())  # the slot came back
        second.wait_state("CONFIRMED")
        second.hangup()
    assert gw.log_events("no free slot", process="engine")


def test_four_concurrent_calls_without_underruns_and_the_fifth_is_rejected(gateway: Gateway) -> None:
    phones = [Phone() for _ in range(5)]
    try:
        for p in phones[:4]:
            p.call(gateway.uri())
        for p in phones[:4]:
            p.wait_state("CONFIRMED")
        phones[4].call(gateway.uri())
        fifth = phones[4].wait_state("DISCONNECTED")
        # pjsua answers past its compiled cap of 4 itself, with 486, and only tells us after.
        assert fifth["last_status_code"] == 486
        wait_until(lambda: gateway.metric("talkover_sip_rejected_by_pjsua_total") == 1, 5, "pjsua cap metric")
        for p in phones[:4]:
            p.play(Path(__file__).parent / "data" / "hours_joe_16k.wav")
        gateway.wait_turn("utterance #2 played", timeout=30, count=4)
        # /calls is the worker's once-a-second status: wait for the one after the replies
        calls = wait_until(lambda: (lambda c: c if len(c) == 4 and all(x["frames_out"] > 100 for x in c) else None)(
            gateway.calls()), 5, "greeting and reply counted for all four calls")
        assert [c["underruns"] for c in calls] == [0, 0, 0, 0]
        assert max(c["tick_gap"]["p99_ms"] for c in calls) <= 40
    finally:
        for p in phones:
            p.close()


def test_killing_the_engine_mid_call_ends_calls_cleanly_and_the_worker_survives(gateway: Gateway) -> None:
    worker = gateway.worker_pid()
    with Phone() as phone:
        phone.call(gateway.uri())
        phone.wait_state("CONFIRMED")
        killed = gateway.engine_pid()
        os.kill(killed, signal.SIGKILL)
        phone.wait_state("DISCONNECTED", timeout=10)  # BYE from the gateway: "engine lost"
        # A new engine, then health: until the supervisor has noticed the death, /healthz still
        # vouches for the old engine (and an INVITE in that window is rightly refused with 503).
        wait_until(lambda: gateway.engine_pids() not in ([], [killed]), 20, "a new engine process")
        wait_until(lambda: gateway.health()[0] == 200, 20, "engine restarted and reconnected")
        assert gateway.worker_pid() == worker
        phone.call(gateway.uri())
        phone.wait_state("CONFIRMED")
        phone.hangup()
    assert gateway.log_events("hanging up", reason="engine lost")


def test_killing_the_worker_starts_a_new_one_that_takes_the_next_call(gateway: Gateway) -> None:
    old = gateway.worker_pid()
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: gateway.health()[0] == 200 and gateway.worker_pid() != old, 30, "a new worker")
    with Phone() as phone:
        phone.call(gateway.uri())
        phone.wait_state("CONFIRMED")
        phone.hangup()
    assert gateway.health()[1]["workers"][0]["restarts"] == 1


def test_no_ack_after_200_tears_the_call_down(gateway: Gateway) -> None:
    """SIPp never ACKs; pjsip retransmits the 200, then BYEs at the transaction timeout (32 s)."""
    idle = idle_after_warm_up(gateway)
    result = run_sipp(gateway, "uac_no_ack.xml", timeout=60)
    assert result.returncode == 0, result.output  # the scenario passes only if our BYE arrived
    assert gateway.wait_log("no ACK after 200")["waited_s"] >= 30
    assert gateway.metric("talkover_calls_total", 'outcome="no_ack"') == 1
    settled(gateway, idle)


def test_refer_blind_transfer_to_the_dialplan_target(gateway_factory: Callable[..., Gateway]) -> None:
    target = "sip:reception@127.0.0.1:5999"
    gw = gateway_factory(entries=[{"name": "t", "numbers": ["*"], "transfer_target": target, "transfer_digit": "0"}])
    with Phone() as phone:
        phone.call(gw.uri())
        phone.wait_state("CONFIRMED")
        phone.dtmf("0")
        refer = phone.wait_for("transfer_request", timeout=10)
        assert refer["target"].strip("<>") == target
        phone.hangup()
    assert gw.wait_log("blind transfer (REFER)")["target"] == target


def test_sigterm_drains_refuses_new_calls_then_byes_the_rest(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory(supervisor={"drain_s": 2.0})
    with Phone() as live, Phone() as late:
        live.call(gw.uri())
        live.wait_state("CONFIRMED")
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        gw.wait_log("draining: new calls get 503")
        late.call(gw.uri())
        assert late.wait_state("DISCONNECTED")["last_status_code"] == 503
        t0 = time.monotonic()
        live.wait_state("DISCONNECTED", timeout=15)
        assert time.monotonic() - t0 < 10
        assert gw.proc.wait(timeout=20) == 0
    assert gw.log_events("hanging up", reason="drain window over")
    assert gw.log_events("talkover stopped")


def test_children_exit_when_the_supervisor_is_killed(gateway: Gateway) -> None:
    """No orphan keeps the SIP port, the engine socket or a call: the kernel SIGTERMs them."""
    children = [gateway.worker_pid(), gateway.engine_pid()]
    assert gateway.proc is not None
    gateway.proc.kill()
    gateway.proc.wait(timeout=10)
    gateway.proc = None

    def gone() -> bool:
        return not any(os.path.exists(f"/proc/{pid}") and _state(pid) != "Z" for pid in children)

    wait_until(gone, 30, "worker and engine to exit after the supervisor died")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", gateway.sip_port))  # the SIP port is free again


def _state(pid: int) -> str:
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"
