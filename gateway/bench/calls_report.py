"""`talkover bench calls`' table and plot."""

from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.bench import plotting

if TYPE_CHECKING:
    from gateway.bench.calls import CallsResult

_COLUMNS = (
    ("calls", 5), ("worker %", 8), ("w -idle", 7), ("w /call", 7), ("engine %", 8), ("e -idle", 7),
    ("e /call", 7), ("tick p50/p99/max ms", 19), ("underruns", 9), ("frames in/out /call", 19), ("log w/e", 7),
    ("sipp", 4), ("stop", 6),
)  # fmt: skip


def _row(cells: tuple[str, ...]) -> str:
    return "  ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, _COLUMNS, strict=True))


def format_table(results: list[CallsResult]) -> str:
    head = _row(tuple(name for name, _ in _COLUMNS))
    lines = [head, "-" * len(head)]
    idles = [r.idle for r in results if r.idle is not None]
    if idles:
        w = statistics.fmean(i.worker_pct for i in idles)
        e = statistics.fmean(i.engine_pct for i in idles)
        lines.append(_row(("0", f"{w:.1f}", "-", "-", f"{e:.1f}", "-", "-", "-", "-", "-", "-", "-", "-")))
    for r in results:
        if r.busy is None or r.idle is None:
            lines.append(_row((str(r.calls), *["-"] * 10, "FAIL", _stop_cell(r))) + f"  {r.error[:80]}")
            continue
        b, i = r.busy, r.idle
        cells = (
            str(r.calls), f"{b.worker_pct:.1f}", f"{b.worker_pct - i.worker_pct:.1f}", f"{r.worker_per_call:.1f}",
            f"{b.engine_pct:.1f}", f"{b.engine_pct - i.engine_pct:.1f}", f"{r.engine_per_call:.1f}",
            f"{r.tick_p50_ms:.0f}/{r.tick_p99_ms:.0f}/{r.tick_max_ms:.1f}", str(r.underruns),
            f"{r.frames_in:.0f}/{r.frames_out:.0f}", f"{r.warnings}/{r.errors}",
            "ok" if r.sipp_rc == 0 else str(r.sipp_rc), _stop_cell(r),
        )  # fmt: skip
        lines.append(_row(cells))
    lines.append("")
    lines.append(
        "CPU in % of one core from /proc/<pid>/stat over the steady window; -idle: minus the same "
        "server's idle figure (row 0 is the mean idle); /call: (total - idle) / N. tick: the media "
        "clock's gap between 20 ms ticks, worst call; underruns: summed over calls; frames: per call "
        f"since it started (~{_mean_age(results):.0f} s old when read); log w/e: warnings/errors in the "
        "server log before SIGTERM; stop: the server's exit code on SIGTERM, and any child (engine, "
        "w0) that exited non-zero during that shutdown."
    )
    return "\n".join(lines)


def _stop_cell(r: CallsResult) -> str:
    bad = [f"{k}={v}" for k, v in r.child_exits.items() if v != 0]
    head = "ok" if r.server_rc == 0 else str(r.server_rc)
    return ",".join([head, *bad]) if bad else head


def _mean_age(results: list[CallsResult]) -> float:
    ages = [r.age_s for r in results if r.age_s]
    return statistics.fmean(ages) if ages else 0.0


def plot(results: list[CallsResult], path: Path) -> str:
    """Writes the PNG; returns what happened, for the report."""
    plt = plotting.pyplot()
    if plt is None:
        return plotting.NO_MATPLOTLIB
    rows = [r for r in results if r.busy is not None and r.idle is not None]
    if not rows:
        return "plot skipped: no run produced figures"
    ns = [r.calls for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(ns, [r.worker_per_call for r in rows], marker="o", label="worker (pjsua2 + media chain)")
    ax.plot(ns, [r.engine_per_call for r in rows], marker="s", label="engine (echo agent)")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("concurrent calls N")
    ax.set_ylabel("CPU per call, % of one core (minus idle)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"talkover bench calls ({os.cpu_count()} CPUs, G.711 both ways)")
    return plotting.save(fig, path)
