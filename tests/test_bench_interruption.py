"""`talkover bench interruption`: the pcap/SIP/RTP reader and the figures on a capture built
here packet by packet (known answers), the barge-in scenario under SIPp against a live
gateway, and the bench's quick mode (SIPp + tcpdump + two media variants) within loose bounds."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from engine.agents.prompts import long_prompt, tone
from gateway.bench import barge_figures as figs
from gateway.bench import interruption
from gateway.bench.capture import G711, CaptureError, read_calls
from gateway.bench.sipp_driver import media_overrides, ulaw_encode
from gateway.config import MediaConfig
from tests.conftest import SCENARIOS, need
from tests.support.gateway import Gateway
from tests.support.sipp import run_sipp

CALLER, GATEWAY = ("127.0.0.1", 6000), ("127.0.0.1", 40000)
root_only = pytest.mark.skipif(os.geteuid() != 0, reason="tcpdump on loopback needs root (CI runs as root)")


# -- a capture built by hand -------------------------------------------------------------------------


def _frame(src: tuple[str, int], dst: tuple[str, int], payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, 17, 0,
                     socket.inet_aton(src[0]), socket.inet_aton(dst[0]))  # fmt: skip
    return b"\0" * 12 + b"\x08\x00" + ip + udp  # Ethernet (what tcpdump writes for lo)


def _pcap(path: Path, packets: list[tuple[float, tuple[str, int], tuple[str, int], bytes]]) -> None:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for t, src, dst, payload in sorted(packets, key=lambda p: p[0]):
        frame = _frame(src, dst, payload)
        out += struct.pack("<IIII", int(t), round((t % 1) * 1e6), len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))


def _sip(first: str, call_id: str, cseq: str, sdp: str = "") -> bytes:
    body = sdp.replace("\n", "\r\n")
    head = f"{first}\r\nVia: SIP/2.0/UDP 127.0.0.1:5061\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n"
    return (head + f"Content-Length: {len(body)}\r\n\r\n" + body).encode()


def _sdp(addr: tuple[str, int], direction: str = "sendrecv") -> str:
    return f"v=0\no=x 1 1 IN IP4 {addr[0]}\ns=-\nc=IN IP4 {addr[0]}\nt=0 0\nm=audio {addr[1]} RTP/AVP 0\na={direction}\n"


def _rtp(seq: int, pcm: np.ndarray) -> bytes:
    return struct.pack("!BBHII", 0x80, 0, seq & 0xFFFF, seq * 160, 1234) + ulaw_encode(pcm)


SPEECH_8K = tone((440.0,), 20, level_dbfs=-20.0)[::2]  # 20 ms at 8 kHz, well above SPEECH_DBFS
QUIET_8K = np.zeros(160, dtype=np.int16)


def _barge_call(path: Path, stop_after_ms: int, onset_packet: int = 25) -> None:
    """A 4 s call: the agent speaks from the answer on; the caller's stream starts at 1.0 s
    with `onset_packet` silent packets; the agent goes silent `stop_after_ms` after the onset."""
    t0, cid = 1000.0, "call-1"
    pk = [
        (t0, CALLER, GATEWAY, _sip("INVITE sip:barge@127.0.0.1:5060 SIP/2.0", cid, "1 INVITE", _sdp(CALLER))),
        (t0 + 0.01, GATEWAY, CALLER, _sip("SIP/2.0 200 OK", cid, "1 INVITE", _sdp(GATEWAY))),
        (t0 + 4.0, CALLER, GATEWAY, _sip("BYE sip:x@127.0.0.1 SIP/2.0", cid, "2 BYE")),
    ]
    onset_t = t0 + 1.0 + onset_packet * 0.02
    for i in range(195):
        t = t0 + 0.02 + i * 0.02
        pk.append((t, GATEWAY, CALLER, _rtp(i, SPEECH_8K if t < onset_t + stop_after_ms / 1000 - 1e-6 else QUIET_8K)))
    for i in range(140):
        t = t0 + 1.0 + i * 0.02
        pk.append((t + 0.003, CALLER, GATEWAY, _rtp(i, QUIET_8K if i < onset_packet else SPEECH_8K)))
    _pcap(path, pk)


def test_g711_tables_invert_the_encoder() -> None:
    x = (np.sin(np.arange(800) / 8.0) * 12000).astype(np.int16)
    back = G711[0][np.frombuffer(ulaw_encode(x), dtype=np.uint8)]
    assert np.max(np.abs(back.astype(int) - x)) <= 12000 * 0.04  # µ-law's quantisation, nothing worse
    assert G711[0][0xFF] == 0 and G711[8][0xD5] == 8  # the silence codes


def test_barge_in_latency_from_a_known_capture(tmp_path: Path) -> None:
    pcap = tmp_path / "c.pcap"
    _barge_call(pcap, stop_after_ms=120)
    (call,) = read_calls(pcap)
    assert call.called == "barge" and call.final_status == 200
    assert call.caller_media == CALLER and call.gateway_media == GATEWAY
    assert len(call.caller_rtp) == 140 and len(call.agent_rtp) == 195
    f = figs.analyse(call, "barge", figs.greeting_shape(long_prompt()), speech_start_s=0.5)
    assert f.measured, f.problem
    assert f.onset_ok and f.speaking_at_onset and not f.greeting_cut
    # The agent's first quiet packet is the one at or after onset + 120 ms; the caller's
    # packets are 3 ms behind the grid, hence 117 ms (packet resolution: 20 ms).
    assert f.latency_ms is not None and 100 <= f.latency_ms <= 140, f.latency_ms


def test_broken_captures_are_errors_or_partial_never_crashes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pcap"
    bad.write_bytes(b"definitely not a pcap file")
    with pytest.raises(CaptureError):
        read_calls(bad)
    good = tmp_path / "good.pcap"
    _barge_call(good, stop_after_ms=120)
    whole = good.read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(whole[: len(whole) // 2 + 7])  # tcpdump killed mid-write
    (call,) = read_calls(cut)
    assert 0 < len(call.agent_rtp) < 195 and call.bye_t is None
    odd = tmp_path / "odd.pcap"
    _pcap(odd, [(1.0, CALLER, GATEWAY, b"SIP/2.0 abc\r\nCall-ID: x\r\n\r\n"), (1.1, CALLER, GATEWAY, b"\x80" * 5)])
    assert read_calls(odd) == []


def test_a_misplaced_onset_and_a_missed_barge_in_are_not_counted(tmp_path: Path) -> None:
    greeting = figs.greeting_shape(long_prompt())
    early = tmp_path / "early.pcap"
    _barge_call(early, stop_after_ms=100, onset_packet=10)  # the clip says speech starts at packet 25
    f = figs.analyse(read_calls(early)[0], "barge", greeting, speech_start_s=0.5)
    assert not f.measured and "manifest" in f.problem
    never = tmp_path / "never.pcap"
    _barge_call(never, stop_after_ms=5000)
    f = figs.analyse(read_calls(never)[0], "barge", greeting, speech_start_s=0.5)
    assert f.problem.startswith("missed") and f.latency_ms is None


def test_stops_ignore_short_dips_and_natural_gaps() -> None:
    def packets(pattern: str) -> list:
        return [figs.RtpPacket(i * 0.02, 0, i, 1, False, -20.0 if c == "#" else -120.0) for i, c in enumerate(pattern)]

    run = "." * figs.SILENT_RUN
    assert figs.stops(packets("####..####"), 0, 10) == []  # an underrun-sized dip is not a stop
    found = figs.stops(packets("#####" + run + "###"), 0, 10)
    assert len(found) == 1 and found[0][0] == pytest.approx(0.1) and found[0][1] == pytest.approx((5 + figs.SILENT_RUN) * 0.02)
    assert figs.stops(packets(run + "####"), 0, 10) == []  # silence before the agent ever spoke
    quiet = np.zeros(16000 // 2, np.int16)  # 0.5 s, like the lead and tail silence of a WAV prompt
    speechy = np.concatenate([quiet, long_prompt(1.0), quiet, long_prompt(1.0), quiet])
    shape = figs.greeting_shape(speechy)  # offsets from the first speech, as the agent's RTP starts there
    assert shape.gaps_s and abs(shape.gaps_s[0] - 1.0) <= 0.04 and shape.seconds == pytest.approx(2.5, abs=0.05)


# -- the scenario and the bench ---------------------------------------------------------------------------


def test_uac_barge_in_scenario_interrupts_the_greeting(gateway_factory: Callable[..., Gateway]) -> None:
    need("sipp")
    gw = gateway_factory(media={}, entries=[{"name": "long", "numbers": ["*"], "greeting": "long"}])
    # 3.5 s of caller speech: a commit needs barge_in_min_ms (800) of voice in one VAD segment,
    # and the clip's first phrase may end in a pause the detector takes as speech-stop.
    result = run_sipp(gw, "uac_barge_in.xml", "-key", "rtp_file", str(SCENARIOS / "audio" / "long_joe.ulaw") + ",1,0",
                      "-set", "barge_ms", "1000", "-set", "after_ms", "4000")  # fmt: skip
    assert result.returncode == 0, result.output
    try:
        turns = gw.wait_turn("barge-in commit")
    except TimeoutError as exc:
        raise AssertionError(f"{exc}: {gw.turns()}\n{gw.log_text()[-3000:]}") from None
    assert gw.turns()[0].startswith("speak greeting #1 (8000 ms)")
    assert turns and "barge-in pause" in gw.turns()


@root_only
@pytest.mark.timeout(300)
def test_quick_bench_two_variants(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need("sipp")
    need("tcpdump")
    plan = interruption.Plan.quick()
    plan.variants = ["default", "energy"]
    png = tmp_path / "interruption.png"
    results: list[interruption.VariantResult] = []
    code = interruption.run(plan, plot_path=png, results=results)
    out = capsys.readouterr()
    assert code == 0, out.err[-4000:]
    default, energy = results
    for r in results:
        assert r.ok and not r.error and r.capture_dropped == 0, (r.name, r.error)
        assert [k.kind for k in r.runs] == ["barge", "backchannel", "echo", "hold"]
        assert all(k.sipp_rc == 0 and k.failed == 0 and k.response_ms for k in r.runs)
        assert len(r.calls) == plan.barge + plan.backchannel + plan.echo + plan.hold
        assert all(c.agent_turn for c in r.calls)  # the greeting reached the caller in every call
        (hold,) = r.of("hold")
        assert hold.measured and hold.hold_speech_packets == 0 and hold.resumed_after_hold, hold
    # The energy baseline (no DSP in the way) stops for every barge-in, fast; so does the
    # default chain (SIPp's line has no echo: the canceller must not mute the caller).
    for r in results:
        lat = interruption.report.latencies(r)
        assert len(lat) == plan.barge and max(lat) < 1000, (r.name, lat)
    assert all(c.paused for c in energy.of("backchannel"))
    # The echo caller makes the baseline interrupt itself; an echo canceller must do better.
    energy_echo, _ = interruption.report.false_barge_ins(energy, ("echo",))
    assert energy_echo >= 1
    if getattr(MediaConfig(), "aec", False):
        default_echo, default_turns = interruption.report.false_barge_ins(default, ("echo",))
        assert default_echo < default_turns
    assert "barge-in latency p50 / p95 / max ms" in out.out and "energy (" in out.out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "old.pcap").write_bytes(b"")
    assert interruption.run(interruption.Plan(workdir=str(tmp_path))) == 2  # would mix with an earlier run
    assert interruption.run(interruption.Plan(variants=["nope"])) == 2
    assert interruption.run(interruption.Plan(barge=0, backchannel=0, silent=0, echo=0, hold=0)) == 2
    assert interruption.run(interruption.Plan(barge_ms=50)) == 2
    assert interruption.run(interruption.Plan(greeting="/no/such.wav")) == 2
    assert "--variants" in capsys.readouterr().err
