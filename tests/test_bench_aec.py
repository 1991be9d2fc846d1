"""`talkover bench aec --short`: the tables print, the plots are saved, and the figures sit
within loose bounds of the full run's (the targets themselves are the full run's business)."""

from __future__ import annotations

import contextlib
import io
import math

import pytest

from gateway.bench.aec import AecReport, report
from gateway.cli import main


PRINTED: list[str] = []


@pytest.fixture(scope="module")
def short_run() -> AecReport:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rep = report(short=True)
    PRINTED.append(out.getvalue())
    return rep


def test_short_bench_prints_every_table_and_saves_plots(short_run: AecReport) -> None:
    text = PRINTED[0]
    for heading in ("Echo cancellation: ERLE", "Noise suppression / gain", "false starts / 100 agent turns", "p95 ms"):
        assert heading in text, text
    assert text.count("targets:") == 3 and "no AEC" in text and "Barge-in on the greeting" in text
    assert all(p.is_file() and p.stat().st_size > 10_000 for p in short_run.plots) and len(short_run.plots) == 2


def test_canceller_beats_no_canceller_on_every_case(short_run: AecReport) -> None:
    aec = [r for r in short_run.erle if r.variant != "no AEC"]
    none = [r for r in short_run.erle if r.variant == "no AEC"]
    assert len(aec) == len(none) == 6
    for a, n in zip(aec, none):
        assert abs(n.erle_after) < 1.0, n  # no AEC removes nothing
        assert a.erle_after >= 30, a  # full-run target: 35 dB on linear paths
        assert a.erle_min_after_1s >= 14 or not math.isfinite(a.erle_min_after_1s), a
        assert a.near_kept_db >= -8, a  # full-run target: within 4 dB
        assert a.false_starts <= n.false_starts


def test_no_gain_control_by_default_because_it_costs_echo_reduction(short_run: AecReport) -> None:
    by = {r.variant: r for r in short_run.noise}
    assert by["AEC3+NS"].erle_after > by["AEC3+NS+AGC(apm)"].erle_after
    assert by["AEC3+NS"].noise_out_dbfs < by["AEC3 alone"].noise_out_dbfs - 5


def test_barge_in_figures_through_the_chain(short_run: AecReport) -> None:
    per_100 = [f.per_100 for f in short_run.false_starts]
    baseline = [f.per_100 for f in short_run.false_starts_no_aec]
    assert max(per_100) <= 10, per_100  # full-run target: <= 1 per 100 turns
    assert min(baseline) >= 50, baseline  # without the canceller the agent interrupts itself
    trials = sum(t.trials for t in short_run.barge_ins)
    detected = sum(t.detected for t in short_run.barge_ins)
    assert detected >= 0.75 * trials, [(t.path, t.caller_db, t.detected) for t in short_run.barge_ins]
    delays = sorted(d for t in short_run.barge_ins for d in t.delays_ms)
    assert 40 < delays[len(delays) // 2] < 300, delays


def test_cli_has_the_aec_bench(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "aec", "--help"])
    assert exit_info.value.code == 0 and "--short" in capsys.readouterr().out


def test_the_caller_barges_in_on_the_greeting_of_an_echo_free_line(short_run: AecReport) -> None:
    """AEC3 alone mutes such a caller while the agent talks (it never converges without an
    echo): the chain must detect the line is echo-free and let the caller through."""
    echo_free = [t for t in short_run.greeting_barge_ins if "ERL60" in t.path]
    assert len(echo_free) == 4
    assert all(t.detected == t.trials for t in echo_free), [(t.path, t.caller_db, t.detected) for t in echo_free]
    loud = [t for t in short_run.greeting_barge_ins if t.caller_db == 0]
    assert sum(t.detected for t in loud) >= 0.9 * sum(t.trials for t in loud)


def test_chain_cpu_table_compares_both_canceller_modes_on_both_lines(short_run: AecReport) -> None:
    """The CPU part ran both chains on both lines; the echo-free line was judged echo-free
    (so AEC3 was left out there) and the echoing one never was (AEC3 in both chains)."""
    assert "CPU of one call's inbound chain" in PRINTED[0]
    free, echoing = short_run.cpu
    assert "ERL60" in free.path and free.echo_free_share > 0.9
    assert "ERL6" in echoing.path and echoing.echo_free_share == 0.0
    assert all(r.us_skip > 0 and r.us_kept > 0 for r in short_run.cpu)
