"""`talkover bench transport`'s table, conclusion and plot."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.bench import plotting
from gateway.bench.transport_result import TRANSPORTS, Result

RTT_OK_MS = 5.0  # a transport adding more than this to a 20 ms frame is out, whatever its CPU


def _cell(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


_COLUMNS = (
    ("mode", 5), ("S", 3), ("transport", 13), ("frames", 7), ("send µs/fr", 10), ("send p99 µs", 11),
    ("peer µs/fr", 10), ("recv µs/fr", 10), ("rtt p50 ms", 10), ("rtt p99 ms", 10), ("frames/s", 9), ("full", 5),
)  # fmt: skip


def _line(cells: tuple[str, ...]) -> str:
    """The first three columns (mode, S, transport) left-aligned, the figures right-aligned."""
    return "  ".join(f"{c:>{w}}" if i > 2 else f"{c:<{w}}" for i, (c, (_, w)) in enumerate(zip(cells, _COLUMNS)))


def format_table(results: list[Result]) -> str:
    head = _line(tuple(name for name, _ in _COLUMNS))
    lines = [head, "-" * len(head)]
    group: tuple[str, int] | None = None
    for r in results:
        if group is not None and group != (r.mode, r.sessions):
            lines.append("")
        group = (r.mode, r.sessions)
        cells = (
            r.mode, str(r.sessions), r.transport, str(r.frames), _cell(r.send_cpu_us, ".1f"),
            _cell(r.send_p99_us, ".1f"), _cell(r.peer_cpu_us, ".1f"), _cell(r.recv_cpu_us, ".1f"),
            _cell(r.rtt_p50_ms, ".3f"), _cell(r.rtt_p99_ms, ".3f"), f"{r.frames_per_s:.0f}", str(r.dropped),
        )  # fmt: skip
        lines.append(_line(cells))
    lines.append("")
    lines.append(
        "send: CPU of the sending thread per frame (encode + send); peer: CPU of the engine / peer "
        "process per frame, polling included; recv: worker receive thread CPU per reply; rtt: "
        "FRAME -> reply; full: paced = frames refused, fast = waits for room."
    )
    return "\n".join(lines)


def conclusion(results: list[Result]) -> str:
    """One line: which transport, from the paced runs at the smallest and largest S."""
    paced = {(r.transport, r.sessions): r for r in results if r.mode == "paced"}
    sizes = sorted({s for _, s in paced})
    lo, hi = sizes[0], sizes[-1]
    candidates = ("sock-raw", "shm-busy", "shm-sleep")

    def fits(name: str) -> bool:
        return all((paced[name, s].rtt_p99_ms or 0.0) <= RTT_OK_MS for s in (lo, hi))

    def cheaper(a: str, b: str) -> bool:
        return all(paced[a, s].total_cpu_us < paced[b, s].total_cpu_us for s in (lo, hi))

    winner = "sock-raw"
    for name in candidates[1:]:
        if fits(name) and cheaper(name, winner):
            winner = name

    def costs(name: str) -> str:
        r_lo, r_hi = paced[name, lo], paced[name, hi]
        return f"{r_lo.total_cpu_us:.0f}/{r_hi.total_cpu_us:.0f} µs, rtt p99 {r_hi.rtt_p99_ms:.2f} ms"

    engine_work = paced["engine-echo", hi].peer_cpu_us - paced["sock-raw", hi].peer_cpu_us
    verdict = "keep the Unix socket" if winner == "sock-raw" else f"use shared memory ({winner})"
    return (
        f"Conclusion: {verdict} — CPU per frame for both ends of the transport at S={lo}/S={hi}: "
        f"socket {costs('sock-raw')}; shm-busy {costs('shm-busy')} (a spinning core per receiver); "
        f"shm-sleep {costs('shm-sleep')} (1 ms poll wakeups); the engine's own work adds "
        f"~{engine_work:.0f} µs/frame."
    )


def plot(results: list[Result], path: Path) -> str:
    """Writes the PNG; returns what happened, for the report."""
    plt = plotting.pyplot()
    if plt is None:
        return plotting.NO_MATPLOTLIB
    paced = [r for r in results if r.mode == "paced"]
    panels = (
        ("sender CPU per frame (µs)", lambda r: r.send_cpu_us, False),
        ("peer CPU per frame (µs, log)", lambda r: r.peer_cpu_us, True),
        ("round trip p99 (ms)", lambda r: r.rtt_p99_ms, False),
    )
    sizes = sorted({r.sessions for r in paced})
    fig, axes = plt.subplots(1, len(panels), figsize=(15, 4.5))
    for ax, (title, value, log) in zip(axes, panels):
        for color, name in enumerate(TRANSPORTS):
            rows = [r for r in paced if r.transport == name and value(r) is not None]
            if rows:
                ax.plot([r.sessions for r in rows], [value(r) for r in rows], marker="o", label=name, color=f"C{color}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("calls S (one frame each per 20 ms)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
    axes[0].legend()
    fig.suptitle(f"talkover bench transport ({os.cpu_count()} CPUs)")
    return plotting.save(fig, path)

