"""`talkover bench webrtc` in a small run: both answerers are measured, the table and the plot
come out, and one call is carried cleanly (loose bounds: the CI machine is shared)."""

from __future__ import annotations

import pytest

from gateway import cli
from gateway.webrtc import bench

pytestmark = pytest.mark.timeout(150)


def test_bench_webrtc_measures_talkover_and_bare_aiortc(capsys: pytest.CaptureFixture[str]) -> None:
    results = bench.measure([1, 2], seconds=2.0)
    assert {(r.server, r.calls) for r in results} == {(s, n) for s in ("talkover", "bare aiortc") for n in (1, 2)}
    for r in results:
        assert r.server_cpu > 0 and r.client_cpu > 0
        assert r.rx_pct > 80, f"{r.server} with {r.calls} calls delivered {r.rx_pct:.0f} % of the frames"
    talkover = [r for r in results if r.server == "talkover"]
    assert all(r.engine_cpu > 0 and r.tick_p99_ms >= 19 for r in talkover)
    bench.print_table(results, [1, 2])
    out = capsys.readouterr().out
    assert "talkover worker CPU | bare aiortc CPU" in out and "concurrent calls here" in out
    assert bench.save_plot(results).stat().st_size > 10_000


def test_bench_webrtc_rejects_bad_steps(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "webrtc", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
