"""WebRTC calls from an aiortc caller (tests' own process) to a real `talkover serve`:
greeting and echo by correlation, hold/resume by renegotiation, DTMF, hang-up and what is
freed, the peer vanishing (ICE consent), capacity and hostile offers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any, Awaitable, Callable

import numpy as np
import pytest

from engine.agents.prompts import chime
from gateway.webrtc.client import SignalError, WebCaller, loopback_only, post
from tests.conftest import DATA, ROOT
from tests.support.audio import active_spans, piecewise_match, read_wav, xcorr
from tests.support.gateway import Gateway

SPEECH = DATA / "hours_joe_16k.wav"
FAST_CONSENT = {"enabled": True, "consent_interval_s": 0.5, "consent_failures": 3, "connect_timeout_s": 5.0}

loopback_only()


async def until(fn: Callable[[], Any], timeout: float, what: str) -> Any:
    """Polls a real condition without blocking the caller's event loop."""
    deadline = time.monotonic() + timeout
    while True:
        value = await asyncio.to_thread(fn)
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


def turn(gw: Gateway, prefix: str, call_id: str, count: int = 1) -> Callable[[], bool]:
    return lambda: len([t for t in gw.turns(call_id) if t.startswith(prefix)]) >= count


def envelope(x: np.ndarray) -> np.ndarray:
    """Level of each 20 ms frame in dB: speech's contour survives noise suppression and phase shifts."""
    frames = x[: x.size - x.size % 320].astype(np.float64).reshape(-1, 320)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1.0)


def webrtc_pid(gw: Gateway) -> int:
    _, health = gw.health()
    return int(next(w["pid"] for w in health["workers"] if w["name"] == "webrtc"))


def udp_sockets(pid: int) -> int:
    inodes = set()
    for table in ("udp", "udp6"):
        rows = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        inodes |= {r.split()[9] for r in rows}
    fds = Path(f"/proc/{pid}/fd")
    return sum(1 for fd in fds.iterdir() if os.readlink(fd).removeprefix("socket:[").rstrip("]") in inodes)


@pytest.fixture
def web_gw(gateway_factory: Callable[..., Gateway]) -> Gateway:
    gw = gateway_factory(webrtc=FAST_CONSENT)
    gw.wait_log("media chain warm", timeout=30)
    return gw


def url(gw: Gateway) -> str:
    return f"http://127.0.0.1:{gw.http_port}"


async def connected(gw: Gateway, entry: str = "", codec: str = "") -> WebCaller:
    caller = WebCaller(url(gw), entry, codec)
    try:
        await caller.call()
        await caller.wait_connected()
    except BaseException:
        await caller.close()
        raise
    return caller


async def test_greeting_then_echo_of_the_caller(web_gw: Gateway) -> None:
    caller = await connected(web_gw)
    cid = caller.call_id
    await until(turn(web_gw, "utterance #1 played", cid), 10, "greeting played")
    connect_to_audio = caller.first_audio_at - caller.offered_at
    sent, _ = read_wav(SPEECH)
    caller.mic.play(sent)
    await until(turn(web_gw, "utterance #2 played", cid), 25, "the echo of the caller played")
    await caller.hangup()
    heard = caller.audio()
    greeting = xcorr(chime(), heard)
    assert greeting.peak > 0.8, f"greeting not heard: correlation {greeting.peak:.2f}"
    await until(lambda: web_gw.log_events("session closed", call_id=cid), 10, "engine session closed")
    agent, _ = read_wav(web_gw.recording(cid, "agent"))
    reply = agent[chime().size :]
    echo = piecewise_match(reply, heard[greeting.lag + chime().size :])  # playout may shift mid-reply
    assert len(echo.peaks) >= 4 and echo.found(0.8) >= 0.9, f"the agent's reply (the echo) not heard: {echo.describe()}"
    engine_heard, _ = read_wav(web_gw.recording(cid, "caller"))
    # The chain's AEC/NS reshape the waveform (phase included): match the speech's energy contour.
    assert xcorr(envelope(sent), envelope(engine_heard)).peak > 0.8, "the engine did not get the caller's speech"
    assert xcorr(envelope(sent), envelope(reply)).peak > 0.8, "the reply is not the caller's turn"
    assert web_gw.log_events("session opened", call_id=cid)[0]["called"] == "test"
    print(f"\noffer → first agent audio: {connect_to_audio * 1000:.0f} ms")
    assert 0 < connect_to_audio < 3


@pytest.mark.parametrize("mode", ["sendonly", "inactive"])
async def test_hold_is_a_renegotiation_and_resume_continues(web_gw: Gateway, mode: str) -> None:
    caller = await connected(web_gw)
    cid = caller.call_id
    await until(turn(web_gw, "utterance #1 played", cid), 10, "greeting played")
    mark = caller.mark()
    answer = await caller.hold(mode)
    assert answer["on_hold"] is True
    assert "a=recvonly" in answer["sdp"] if mode == "sendonly" else "a=inactive" in answer["sdp"]
    await caller.wait_message(type="state", state="on hold", since=mark)
    await until(turn(web_gw, "hold", cid), 10, "engine hold")
    await until(lambda: web_gw.calls() and web_gw.calls()[0]["on_hold"], 10, "on_hold in /calls")
    heard_before = len(caller.heard)
    sent, _ = read_wav(SPEECH)
    await asyncio.sleep(caller.mic.play(sent) + 0.3)  # the caller talks while holding: not speech
    during = caller.audio()[heard_before * 320 :]
    assert not active_spans(during, threshold_dbfs=-50), "agent audio was sent while on hold"
    assert web_gw.calls()[0]["speech_starts"] == 0
    mark = caller.mark()
    assert (await caller.resume())["on_hold"] is False
    await caller.wait_message(type="state", state="listening", since=mark)
    await until(turn(web_gw, "resume from hold", cid), 10, "engine resume")
    caller.mic.play(sent)
    await until(turn(web_gw, "utterance #2 played", cid), 25, "the conversation goes on")
    await caller.hangup()
    turns = web_gw.turns(cid)
    assert "caller turn ended" not in turns[: turns.index("resume from hold")]


async def test_dtmf_by_data_channel_and_http_in_order(web_gw: Gateway) -> None:
    caller = await connected(web_gw)
    cid = caller.call_id
    for digit in "159#":
        caller.dtmf(digit)
    await until(turn(web_gw, "dtmf", cid, 4), 10, "four digits")
    await asyncio.to_thread(post, f"{url(web_gw)}/webrtc/calls/{cid}/dtmf", {"digit": "*", "duration_ms": 80})
    await until(turn(web_gw, "dtmf", cid, 5), 10, "the HTTP digit")
    with pytest.raises(SignalError) as bad:
        await asyncio.to_thread(post, f"{url(web_gw)}/webrtc/calls/{cid}/dtmf", {"digit": "x"})
    assert bad.value.status == 400
    caller.channel.send("not json")  # ignored, logged
    caller.channel.send(json.dumps({"type": "dtmf", "digit": "55"}))
    caller.dtmf("0")
    await until(turn(web_gw, "dtmf", cid, 6), 10, "a digit after bad messages")
    await caller.hangup()
    digits = [t.split()[1] for t in web_gw.turns(cid) if t.startswith("dtmf")]
    assert digits == list("159#*0")
    assert len(web_gw.log_events("bad data-channel message ignored", call_id=cid)) == 2


async def test_hangup_frees_the_slot_the_peer_connection_and_its_ports(web_gw: Gateway) -> None:
    pid = webrtc_pid(web_gw)
    assert udp_sockets(pid) == 0
    callers = [await connected(web_gw) for _ in range(3)]
    await until(lambda: len(web_gw.calls()) == 3, 10, "three calls in /calls")
    assert udp_sockets(pid) == 3  # one bundled ICE candidate each
    await callers[0].hangup()  # data channel "hangup"
    await asyncio.to_thread(post, f"{url(web_gw)}/webrtc/calls/{callers[1].call_id}/hangup")
    await callers[2].close()  # the page just closes: DTLS close_notify
    for c in callers:
        await until(lambda c=c: web_gw.log_events("session closed", call_id=c.call_id), 10, "engine slot freed")
    await until(lambda: not web_gw.calls(), 10, "/calls empty")
    await until(lambda: udp_sockets(pid) == 0, 10, "UDP ports closed")
    assert web_gw.metric("talkover_webrtc_peer_connections") == 0
    assert web_gw.metric("talkover_calls_active") == 0
    assert webrtc_pid(web_gw) == pid


async def test_a_vanished_peer_is_ended_by_ice_consent(web_gw: Gateway) -> None:
    """The caller's process is killed: no BYE, no close. Consent checks fail → call ended."""
    pid = webrtc_pid(web_gw)
    proc = subprocess.Popen([sys.executable, "-m", "gateway.webrtc.client", url(web_gw), "--seconds", "60"],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        cid = json.loads(await asyncio.to_thread(proc.stdout.readline))["call_id"]
        await until(lambda: web_gw.calls(), 10, "the call in /calls")
        proc.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        ended = await until(lambda: web_gw.log_events("call ended", call_id=cid), 15, "call ended by consent")
        waited = time.monotonic() - killed
    finally:
        proc.kill()
        proc.wait()
    assert ended[0]["reason"] in ("peer connection failed", "peer connection closed")
    assert waited < 0.5 * 3 * 1.2 + 5
    await until(lambda: udp_sockets(pid) == 0, 10, "UDP ports closed")
    await until(lambda: web_gw.log_events("session closed", call_id=cid), 10, "engine slot freed")


def raw_post(gw: Gateway, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    req = urllib.request.Request(f"{url(gw)}{path}", data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as r:
            return r.status, json.loads(r.read()), r.headers.get("Retry-After", "")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}"), e.headers.get("Retry-After", "")


HOSTILE = [
    (b"not json", 400),
    (json.dumps({"type": "answer", "sdp": "v=0"}).encode(), 400),
    (json.dumps({"type": "offer", "sdp": 5}).encode(), 400),
    (json.dumps({"type": "offer", "sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}).encode(), 400),
    (json.dumps({"type": "offer", "sdp": "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\n"}).encode(), 400),
    (json.dumps({"type": "offer", "sdp": "v=0\r\nm=audio x\r\na=rtpmap:\r\na=candidate:\r\n"}).encode(), 400),
    (json.dumps({"type": "offer", "sdp": "v=0\r\n" + "m=audio 9 RTP/AVP 0\r\n" * 2500}).encode(), 400),
    (json.dumps({"type": "offer", "sdp": "v=0\r\n" + "a=x\r\n" * 60000}).encode(), 413),
]


async def test_capacity_hostile_offers_and_routing(gateway_factory: Callable[..., Gateway]) -> None:
    entries = [{"name": "test", "numbers": ["*"], "agent": "echo", "greeting": "chime"},
               {"name": "quiet", "numbers": ["quiet"], "agent": "echo", "greeting": ""}]
    gw = gateway_factory(webrtc={**FAST_CONSENT, "max_calls": 1}, entries=entries)
    pid = webrtc_pid(gw)
    for body, status in HOSTILE:
        code, reply, _ = await asyncio.to_thread(raw_post, gw, "/webrtc/offer", body)
        assert code == status, f"{body[:60]!r}: {code} {reply}"
        assert reply["error"]
    code, reply, _ = await asyncio.to_thread(raw_post, gw, "/webrtc/calls/nope/offer", b"{}")
    assert code == 404
    with pytest.raises(SignalError) as missing:
        await connected(gw, entry="no-such-entry")
    assert missing.value.status == 404 and "no-such-entry" in str(missing.value)
    first = await connected(gw, entry="quiet")
    with pytest.raises(SignalError) as busy:
        await connected(gw)
    assert busy.value.status == 503 and "busy" in str(busy.value)
    code, _, retry_after = await asyncio.to_thread(raw_post, gw, "/webrtc/offer", json.dumps(
        {"type": "offer", "sdp": first.pc.localDescription.sdp}).encode())
    assert code == 503 and retry_after == "5"
    call = (await until(gw.calls, 10, "the call"))[0]
    assert call["dialplan"] == "quiet" and call["transport"] == "webrtc"
    await until(lambda: gw.calls()[0]["frames_in"] > 50, 10, "media flowing")
    assert not active_spans(first.audio(), threshold_dbfs=-50), "entry 'quiet' has no greeting"
    await first.hangup()
    await until(lambda: not gw.calls(), 10, "/calls empty")
    again = await connected(gw)  # the line is free again; the worker survived everything
    await until(turn(gw, "utterance #1 played", again.call_id), 10, "greeting on the next call")
    await again.hangup()
    assert webrtc_pid(gw) == pid
    assert gw.metric("talkover_webrtc_offers_total", 'outcome="bad_offer"') >= len(HOSTILE) - 1


@pytest.mark.parametrize("codec, expect", [("PCMU", "PCMU/8000"), ("G722", "G722/8000")])
async def test_codec_preference_of_the_caller(web_gw: Gateway, codec: str, expect: str) -> None:
    caller = await connected(web_gw, codec=codec)
    await until(turn(web_gw, "utterance #1 played", caller.call_id), 10, "greeting played")
    # /calls is the worker's once-a-second status: wait for one that knows the codec
    call = (await until(lambda: [c for c in web_gw.calls() if c.get("codec")], 10, "the call's codec in /calls"))[0]
    await caller.hangup()
    assert call["codec"] == expect
    assert xcorr(chime(), caller.audio()).peak > 0.6


async def test_unreachable_caller_is_answered_then_ended_and_freed(web_gw: Gateway) -> None:
    """The offer's candidates lead nowhere (the caller vanished right after offering)."""
    pid = webrtc_pid(web_gw)
    ghost = WebCaller(url(web_gw))
    await ghost.pc.setLocalDescription(await ghost.pc.createOffer())
    offer = ghost.pc.localDescription.sdp
    await ghost.close()  # its ports are closed: ICE checks go unanswered
    answer = await asyncio.to_thread(post, f"{url(web_gw)}/webrtc/offer", {"type": "offer", "sdp": offer})
    cid = answer["call_id"]
    ended = await until(lambda: web_gw.log_events("call ended", call_id=cid), 20, "the unconnected call ended")
    assert ended[0]["was"] == "answered"
    assert ended[0]["reason"] in ("peer connection failed", "ICE/DTLS did not connect in time")
    await until(lambda: web_gw.log_events("session closed", call_id=cid), 10, "engine slot freed")
    await until(lambda: udp_sockets(pid) == 0, 10, "UDP ports closed")


async def test_engine_loss_ends_web_calls_and_the_next_call_works(web_gw: Gateway) -> None:
    caller = await connected(web_gw)
    await until(turn(web_gw, "utterance #1 played", caller.call_id), 10, "greeting played")
    os.kill(web_gw.engine_pid(), signal.SIGKILL)
    await caller.wait_message(type="ended", reason="engine lost", timeout=10)
    await until(lambda: not web_gw.calls(), 10, "the call gone from /calls")
    await caller.close()
    await until(lambda: web_gw.health()[0] == 200, 20, "engine restarted and workers reconnected")
    again = await connected(web_gw)
    await until(turn(web_gw, "utterance #1 played", again.call_id), 10, "greeting after the restart")
    await again.hangup()


async def test_the_gateway_closes_an_ended_call_once_the_caller_confirms_or_after_2_s(web_gw: Gateway) -> None:
    """Closing the peer connection aborts SCTP, and a browser may drop an "ended" it has acked
    at the SCTP level but not yet handed to the page (CI, loaded machine): the page answers
    "ended_ack" and the gateway waits for it, 2 s at most for a caller that never answers."""
    confirming = await connected(web_gw)
    silent = await connected(web_gw)
    silent.ack_ended = False
    os.kill(web_gw.engine_pid(), signal.SIGKILL)
    for caller in (confirming, silent):
        await caller.wait_message(type="ended", reason="engine lost", timeout=10)
    for caller in (confirming, silent):
        await until(lambda c=caller: web_gw.log_events("call ended", call_id=c.call_id), 10, "call ended")
    unconfirmed = web_gw.log_events("the page did not confirm that it learnt why the call ended (2 s)")
    assert [r["call_id"] for r in unconfirmed] == [silent.call_id]
    for caller in (confirming, silent):
        await caller.close()


async def test_drain_refuses_new_offers_and_ends_live_calls_at_the_window(
    gateway_factory: Callable[..., Gateway],
) -> None:
    gw = gateway_factory(webrtc=FAST_CONSENT, supervisor={"drain_s": 2.0})
    caller = await connected(gw)
    assert gw.proc is not None
    gw.proc.send_signal(signal.SIGTERM)

    def refused() -> bool:
        code, reply, _ = raw_post(gw, "/webrtc/offer", json.dumps(
            {"type": "offer", "sdp": caller.pc.localDescription.sdp}).encode())
        return code == 503 and "draining" in reply.get("error", "")

    await until(refused, 15, "offers refused while draining")
    assert caller.pc.connectionState == "connected"  # the live call goes on meanwhile
    await caller.wait_message(type="ended", reason="drain window over", timeout=15)
    await caller.close()
    assert await asyncio.to_thread(gw.proc.wait, 30) == 0
