"""`talkover bench load`: the RTP figures on a capture built here (known answers), and the
bench's quick mode against a real `talkover serve` (SIPp, tcpdump, the echo agent) with
figures inside loose bounds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gateway.bench import load
from gateway.bench.capture import read_calls
from gateway.bench.sipp_driver import sipp_rate
from tests.conftest import need
from tests.test_bench_interruption import CALLER, GATEWAY, QUIET_8K, SPEECH_8K, _pcap, _rtp, _sdp, _sip


def test_rtp_figures_count_loss_and_gaps(tmp_path: Path) -> None:
    t0, cid = 50.0, "load-1"
    pk = [
        (t0, CALLER, GATEWAY, _sip("INVITE sip:hold1@127.0.0.1 SIP/2.0", cid, "1 INVITE", _sdp(CALLER))),
        (t0 + 0.005, GATEWAY, CALLER, _sip("SIP/2.0 200 OK", cid, "1 INVITE", _sdp(GATEWAY))),
        (t0 + 2.0, CALLER, GATEWAY, _sip("BYE sip:x@127.0.0.1 SIP/2.0", cid, "2 BYE")),
    ]
    for i in range(100):
        t = t0 + 0.01 + i * 0.02
        pk.append((t + 0.001, CALLER, GATEWAY, _rtp(i, SPEECH_8K)))
        if i not in (40, 41, 42):  # the gateway's stream loses three packets here
            pk.append((t + 0.002, GATEWAY, CALLER, _rtp(i, QUIET_8K if i < 10 else SPEECH_8K)))
    _pcap(tmp_path / "c.pcap", pk)
    calls = read_calls(tmp_path / "c.pcap")
    r = load.rtp_figures(calls)
    assert (r.calls, r.both_ways, r.caller_packets, r.agent_packets, r.lost) == (1, 1, 100, 97, 3)
    assert r.agent_gap_max_ms == pytest.approx(80, abs=0.01) and r.caller_gap_p99_ms == pytest.approx(20, abs=0.01)


def test_sipp_rate_arguments() -> None:
    assert sipp_rate(2) == (2, 1000)
    assert sipp_rate(0.7) == (7, 10000)
    assert sipp_rate(0.25) == (25, 100000)


def test_bad_arguments_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert load.run(load.LoadPlan(hold_s=1)) == 2
    assert load.run(load.LoadPlan(rates=[])) == 2
    assert load.run(load.LoadPlan(rates=[0.5, -1])) == 2
    assert load.run(load.LoadPlan(max_calls=-1)) == 2
    assert "--hold-s" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="tcpdump on loopback needs root (CI runs as root)")
@pytest.mark.timeout(240)
def test_quick_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need("sipp")
    need("tcpdump")
    plan = load.LoadPlan.quick_plan()
    png = tmp_path / "load.png"
    results: list[load.LoadResult] = []
    code = load.run(plan, plot_path=png, results=results)
    out = capsys.readouterr()
    assert code == 0, out.err[-4000:]
    (res,) = results
    assert res.server_rc == 0 and not res.error
    assert res.cap >= plan.max_calls  # pjsua's cap (4) is above the quick steps
    assert [int(s.value) for s in res.hold] == [1, 2], out.err[-3000:]
    for s in res.hold:
        n = int(s.value)
        assert s.sipp_rc == 0 and (s.ok_calls, s.failed, s.rejected) == (n, 0, 0), out.err[-3000:]
        assert s.window_s >= load.MIN_WINDOW_S and not s.error
        assert 0 < (s.worker_pct - res.idle_worker_pct) / n < 100  # a busy worker, not a spinning one
        assert len(s.response_ms) == n and max(s.response_ms) < 5000
        assert s.rtp is not None and s.rtp.calls == n
        expected = n * plan.hold_s / 0.02  # packets each way if the clock kept time
        assert s.rtp.caller_packets > 0.5 * expected and s.rtp.agent_packets > 0.25 * expected  # audio both ways
    (rate,) = res.rate
    assert rate.sipp_rc == 0 and rate.placed == rate.ok_calls == 3 and rate.failed == 0
    assert rate.rtp is not None and rate.rtp.calls == 3 and rate.rtp.agent_packets > 0
    assert "(a) concurrent calls held" in out.out and "(b) calls per second" in out.out
    assert "most concurrent calls held" in out.out and "0 (idle)" in out.out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
