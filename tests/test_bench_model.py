"""`talkover bench model` in its quick mode, and the word error rate it reports."""

from __future__ import annotations

import subprocess
import sys

from gateway.bench.model import word_errors
from gateway.config import REPO_ROOT


def test_word_errors_count_edits_after_normalisation() -> None:
    assert word_errors("Are you open on Saturday?", "are you open on saturday") == (0, 5)
    assert word_errors("are you open on saturday", "are you opened saturday") == (2, 5)  # 1 sub + 1 del
    assert word_errors("open today", "we are open today") == (2, 2)  # 2 insertions
    assert word_errors("open today", "") == (2, 2)


def test_bench_model_quick_run_prints_the_table_and_the_bars(tmp_path) -> None:  # type: ignore[no-untyped-def]
    plot = tmp_path / "model.png"
    proc = subprocess.run([sys.executable, "-m", "gateway.cli", "bench", "model", "--part", "codec", "--limit", "1",
                           "--plot", str(plot)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=170)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    for row in ("uncoded", "talkover 1k", "Opus 6k", "AMR-NB 4.75k", "real-time factor", "bars (issue 8)"):
        assert row in out, out
    assert out.count("[met]") + out.count("[NOT met]") == 8, out
    assert "[met] bitrate 1.00 kbit/s" in out
    assert plot.stat().st_size > 5000
