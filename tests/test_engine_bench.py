"""`talkover bench engine` runs end to end on the tiny model and prints its table and plot."""

from __future__ import annotations

import subprocess
import sys
import time

from tests.conftest import ARTIFACTS, ROOT


def test_bench_engine_prints_batched_and_one_by_one_figures_and_a_plot() -> None:
    started = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "bench", "engine", "--config", "tiny", "--streams", "3",
         "--ticks", "3", "--threads", "1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "GFLOP per stream-second" in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.strip()[:1].isdigit() and "|" in line]
    assert [int(r.split("|")[0]) for r in rows] == [1, 2, 3]
    assert all("ms" in r and "MiB" in r for r in rows)
    assert "largest real-time stream count" in out.stdout
    assert "[3/3] 3 streams" in out.stderr  # progress
    plot = ARTIFACTS / "bench_engine_tiny_cpu.png"
    assert plot.exists() and plot.stat().st_mtime >= started - 1


def test_bench_engine_rejects_a_bad_config_clearly() -> None:
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "bench", "engine", "--config", "/nonexistent"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2
    assert "no such checkpoint directory" in out.stderr and "Traceback" not in out.stderr
