"""`talkover bench network`: the impairment profiles (reproducible, statistics within bounds),
the trace format, the relay's SIP edits (SDP rewrite keeps the message valid; malformed SIP does
not stop it) over real sockets, the oracle, and the bench's quick mode against a live gateway
with SIPp."""

from __future__ import annotations

import math
import socket
import time
from pathlib import Path

import pytest

from gateway.bench import network, network_report
from gateway.bench import sip_rewrite as sip
from gateway.bench.impair import (
    EXAMPLE_TRACE,
    PROFILES,
    Fate,
    Profile,
    burst_lengths,
    impairment,
    read_trace,
    write_trace,
)
from gateway.bench.impair_relay import ImpairRelay
from tests.conftest import need

N = 20000


def _fates(profile: Profile, n: int = N, stream: int = 0) -> list[Fate]:
    imp = impairment(profile, stream)
    return [imp.next() for _ in range(n)]


# -- profiles and traces ------------------------------------------------------------------------


def test_seeded_profile_is_reproducible_and_streams_differ() -> None:
    p = PROFILES["jitter40-loss3"]
    assert _fates(p, 500) == _fates(p, 500)
    assert _fates(p, 500, stream=1) != _fates(p, 500)
    assert _fates(Profile("x", jitter_ms=30, loss=0.03, seed=9), 500) != _fates(p, 500)


def test_random_loss_and_jitter_within_bounds() -> None:
    fates = _fates(PROFILES["jitter40-loss3"])
    loss = sum(f.lost for f in fates) / N
    assert 0.025 < loss < 0.035
    delays = [f.delay_ms for f in fates if not f.lost]
    assert 10 <= min(delays) < 11 and 69 < max(delays) <= 70
    assert abs(sum(delays) / len(delays) - 40) < 1
    assert sum(burst_lengths(fates)) / len(burst_lengths(fates)) < 1.2  # independent: bursts are rare


def test_gilbert_elliott_loss_comes_in_bursts() -> None:
    fates = _fates(PROFILES["burst5"])
    loss = sum(f.lost for f in fates) / N
    bursts = burst_lengths(fates)
    assert 0.035 < loss < 0.065
    assert 3 <= sum(bursts) / len(bursts) <= 8
    assert max(bursts) >= 10  # geometric tail


def test_reordering_holds_back_about_two_percent() -> None:
    fates = _fates(PROFILES["reorder2"])
    held = sum(1 for f in fates if f.delay_ms > 60) / N
    assert not any(f.lost for f in fates)
    assert 0.015 < held < 0.025
    assert {round(f.delay_ms) for f in fates} == {20, 70}


def test_trace_round_trip_and_errors(tmp_path: Path) -> None:
    fates = [Fate(False, 12.5), Fate(True), Fate(False, 100.0)]
    path = tmp_path / "t.trace"
    write_trace(path, fates, "a comment")
    assert read_trace(path) == fates
    replay = impairment(Profile("t", trace=str(path)))
    assert [replay.next() for _ in range(4)] == fates + fates[:1]  # replayed from the start
    path.write_text("12\nfast\n")
    with pytest.raises(ValueError, match=":2:"):
        read_trace(path)
    shipped = read_trace(EXAMPLE_TRACE)
    assert len(shipped) == 1500 and 0.005 < sum(f.lost for f in shipped) / 1500 < 0.05


# -- SIP edits ------------------------------------------------------------------------------------

SDP = "v=0\r\no=sipp 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\nm=audio 6000 RTP/AVP 0 101\r\na=rtcp:6001\r\na=sendrecv\r\n"


def _invite(body: str = SDP, call_id: str = "abc@x") -> bytes:
    head = (f"INVITE sip:1000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1\r\n"
            f"From: <sip:a@x>;tag=1\r\nTo: <sip:1000@x>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return (head + body).encode()


def test_sdp_rewrite_keeps_the_message_valid() -> None:
    msg = sip.parse(_invite())
    sip.push_via(msg, "127.0.0.1", 7000, sip.relay_branch(msg))
    msg.body = sip.rewrite_sdp(msg.body, "127.0.0.1", 41234)
    again = sip.parse(msg.to_bytes())
    assert int(again.header("content-length")) == len(again.body)
    assert sip.sdp_audio_address(again.body) == ("127.0.0.1", 41234)
    assert b"a=rtcp" not in again.body and b"m=audio 41234 RTP/AVP 0 101\r\n" in again.body
    assert again.header("via").startswith("SIP/2.0/UDP 127.0.0.1:7000;branch=" + sip.VIA_BRANCH_PREFIX)
    assert sip.pop_via(again).startswith("SIP/2.0/UDP 127.0.0.1:7000")
    assert sip.top_via(again) == "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1"
    assert sip.relay_branch(sip.parse(_invite())) == sip.relay_branch(sip.parse(_invite()))  # retransmission


@pytest.mark.parametrize("bad", [b"\x00\x01garbage", b"INVITE nothing\r\n\r\n", b"SIP/2.0 200 OK\r\nVia: x\r\n"])
def test_malformed_sip_is_rejected_by_the_parser(bad: bytes) -> None:
    with pytest.raises(sip.SipParseError):
        sip.parse(bad)


def _udp() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(3)
    return s


def test_relay_forwards_sip_and_impaired_rtp_over_sockets() -> None:
    """A fake caller and gateway on real sockets: the INVITE reaches the 'gateway' with the
    relay's Via and media port, garbage is passed on without stopping the relay, the 200 OK
    comes back without that Via, and RTP goes through with every packet recorded."""
    caller, gw, caller_rtp, gw_rtp = _udp(), _udp(), _udp(), _udp()
    sdp = SDP.replace("10.0.0.5", "127.0.0.1").replace("6000", str(caller_rtp.getsockname()[1]))
    with ImpairRelay(gw.getsockname(), Profile("t", delay_ms=5, loss=0.5, seed=3)) as relay:
        relay_sip = ("127.0.0.1", relay.sip_port)
        caller.sendto(b"\x00garbage\r\n", relay_sip)
        assert gw.recvfrom(65535)[0] == b"\x00garbage\r\n"
        caller.sendto(_invite(sdp), relay_sip)
        invite = sip.parse(gw.recvfrom(65535)[0])
        relay_media = sip.sdp_audio_address(invite.body)
        assert relay_media is not None and relay_media[1] != caller_rtp.getsockname()[1]
        ok = sip.SipMessage("SIP/2.0 200 OK", list(invite.headers), b"")
        ok.body = sip.rewrite_sdp(invite.body, "127.0.0.1", gw_rtp.getsockname()[1])
        gw.sendto(b"not sip at all", relay_sip)  # dropped, not fatal
        gw.sendto(ok.to_bytes(), relay_sip)
        back = sip.parse(caller.recvfrom(65535)[0])
        assert back.status == 200 and sip.top_via(back) == "SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK1"
        caller_side = sip.sdp_audio_address(back.body)
        assert caller_side is not None and caller_side[1] != gw_rtp.getsockname()[1]
        for seq in range(40):
            caller_rtp.sendto(bytes([0x80, 0]) + seq.to_bytes(2, "big") + bytes(8 + 160), caller_side)
        gw_rtp.settimeout(0.5)
        got = []
        try:
            while len(got) < 40:
                data, src = gw_rtp.recvfrom(2048)
                got.append(int.from_bytes(data[2:4], "big"))
                assert src == relay_media  # sent from the address in the gateway's SDP
        except socket.timeout:
            pass
        gw_rtp.sendto(b"\x80\x00" + bytes(170), relay_media)
        assert len(caller_rtp.recvfrom(2048)[0]) == 172  # the other way, unimpaired
        (path,) = relay.snapshot()
        assert relay.sip.verbatim == 1 and relay.sip.dropped == 1
    assert len(path.records) == 40 and 40 - path.lost == len(got) and 8 < path.lost < 32
    assert sorted(got) == [r.seq for r in path.records if not math.isnan(r.forwarded)]
    assert all(4 <= r.delay_ms < 100 for r in path.records if not math.isnan(r.forwarded))
    for s in (caller, gw, caller_rtp, gw_rtp):
        s.close()


def test_oracle_is_the_smallest_fixed_delay_losing_that_fraction() -> None:
    delays = [10.0] * 90 + [50.0] * 8 + [200.0] * 2
    assert network_report.oracle_delay(delays, 100, 0.0) == 200
    assert network_report.oracle_delay(delays, 100, 0.02) == 50
    assert network_report.oracle_delay(delays, 100, 0.10) == 10
    run = network_report.ProfileRun("s", "p", relay_packets=100, delays_ms=delays,
                                    jb=[{"jb_discard": 2, "rx_packets": 98, "rx_lost": 2, "jb_delay_avg_ms": 40,
                                         "jb_delay_max_ms": 60, "jb_delay_dev_ms": 10, "jb_lost": 3, "jb_empty": 1}])  # fmt: skip
    assert run.late_pct == 2 and run.plc_pct == 4 and run.oracle_ms == 50
    assert run.oracle_wait_ms == pytest.approx(50 - (900 + 400) / 98)
    assert run.jb_p95_ms == pytest.approx(40 + 16.45)


# -- the bench against a live gateway ----------------------------------------------------------------


def test_quick_bench_through_the_relay(tmp_path: Path) -> None:
    need("sipp")
    results: list[network_report.ProfileRun] = []
    t0 = time.monotonic()
    plan = network.Plan.quick()
    rc = network.run(plan, plot_path=tmp_path / "net.png", results=results)
    assert time.monotonic() - t0 < 90
    assert rc == 0, [r.error for r in results]
    by = {r.profile: r for r in results}
    clean, lossy = by["clean"], by["jitter40-loss3"]
    for r in (clean, lossy):
        assert len(r.jb) == plan.calls and r.relay_packets > plan.calls * plan.talk_s * 40
    assert clean.relay_lost == 0 and clean.late_pct < 0.5 and clean.plc_pct < 1.5
    assert clean.net_mean_ms < 5 and clean.jb_mean_ms < lossy.jb_mean_ms
    assert 1.5 < lossy.net_loss_pct < 5
    # the defaults' start prefetch keeps late discards low (pjmedia's own: ~15 %); PLC is the
    # network's 3 % plus the late frames and the empty gets while the buffer refills
    assert lossy.late_pct < 5 and 2 <= lossy.plc_pct <= 20
    assert lossy.jb_max_ms >= 40 and lossy.jb_mean_ms <= lossy.jb_p95_ms <= lossy.jb_max_ms
    assert 40 <= lossy.oracle_ms <= 90  # 40 ± 30 ms, plus the relay's own scheduling delay
    assert (tmp_path / "net.png").stat().st_size > 10_000
