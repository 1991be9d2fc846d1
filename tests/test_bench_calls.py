"""`talkover bench calls` in its quick mode: one real call through a real `talkover serve`
(SIPp, the echo agent), figures inside loose bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.bench import calls as bench_calls
from gateway.bench.calls import CallsResult
from tests.conftest import need

pytestmark = pytest.mark.timeout(60)


def test_one_call_quick(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    need("sipp")
    results: list[CallsResult] = []
    png = tmp_path / "bench_calls.png"
    code = bench_calls.run([1], seconds=8, quick=True, plot_path=png, results=results)
    out = capsys.readouterr()
    assert len(results) == 1
    r = results[0]
    assert not r.error, f"{r.error}\n{out.err}"
    assert r.sipp_rc == 0, out.err
    assert r.server_rc == 0, out.err
    assert code == 0, out.err
    assert r.idle is not None and r.busy is not None
    assert r.busy.seconds >= bench_calls.QUICK_MIN_WINDOW_S
    assert r.underruns == 0, out.err
    assert r.worker_per_call < 50.0, out.err
    assert r.frames_in > 0 and r.frames_out > 0, out.err  # audio went both ways
    assert 0 < r.tick_p50_ms <= r.tick_p99_ms <= r.tick_max_ms
    assert r.tick_max_ms < 200, out.err
    # The table: the idle row, then N=1.
    rows = [line.split() for line in out.out.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["0", "1"], out.out
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert not png.exists()
    else:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_arguments_are_refused() -> None:
    assert bench_calls.run([], seconds=4) == 2
    assert bench_calls.run([0], seconds=4) == 2
    assert bench_calls.run([1], seconds=0) == 2
    assert bench_calls.parse_calls("1, 2,4") == [1, 2, 4]
