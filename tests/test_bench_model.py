"""`talkover bench model` in its quick mode, and the word error rate it reports."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from gateway.bench.model import word_errors
from gateway.bench.model_diagnose import HOP, _frames, griffin_lim
from gateway.config import REPO_ROOT


def test_word_errors_count_edits_after_normalisation() -> None:
    assert word_errors("Are you open on Saturday?", "are you open on saturday") == (0, 5)
    assert word_errors("are you open on saturday", "are you opened saturday") == (2, 5)  # 1 sub + 1 del
    assert word_errors("open today", "we are open today") == (2, 2)  # 2 insertions
    assert word_errors("open today", "") == (2, 2)


def test_bench_model_quick_run_prints_the_table_and_the_bars(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plot = tmp_path / "model.png"
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "bench", "model", "--part", "codec", "--limit", "1",
                           "--diagnose", "--plot", str(plot)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for row in ("uncoded", "talkover 1k", "Opus 6k", "AMR-NB 4.75k", "real-time factor", "bars (issue 8)",
                "uncoded |S|+GL", "talkover 1k |S|+GL", "talkover no RVQ"):
        assert row in out, out
    assert out.count("[met]") + out.count("[NOT met]") == 8, out  # diagnostic rows are never bars
    assert "[met] bitrate 1.00 kbit/s" in out
    assert plot.stat().st_size > 5000


def _spectral_convergence(reference: np.ndarray, other: np.ndarray) -> float:
    count = reference.size // HOP
    a = np.abs(np.fft.rfft(_frames(reference.astype(np.float64), count)))
    b = np.abs(np.fft.rfft(_frames(other.astype(np.float64), count)))
    return float(np.linalg.norm(a - b) / np.linalg.norm(a))


def test_griffin_lim_rebuilds_phases_that_fit_the_magnitudes() -> None:
    t = np.arange(16000) / 16000
    f0 = 110 + 40 * t  # a gliding harmonic voice, 1 s
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    voice = sum(np.sin(k * phase) / k for k in range(1, 20))
    pcm = (8000 * voice / np.abs(voice).max()).astype(np.int16)
    rebuilt = griffin_lim(pcm)
    assert _spectral_convergence(pcm, rebuilt) < 0.22  # 0.18 at 64 iterations
    assert _spectral_convergence(pcm, griffin_lim(pcm, iterations=0)) > 0.5  # random phases do not fit (0.64)
