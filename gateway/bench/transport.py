"""`talkover bench transport`: what it costs to move a 20 ms frame between worker and engine.

The worker's media clock thread hands each call's 16 kHz frame (640 bytes) to the engine
every tick and must never block. This measures the Unix SEQPACKET socket the product uses
(engine/wire.py) against the real engine process, next to a shared-memory alternative
(benchmark code only), and prints the per-frame costs side by side:

  engine-silent  real engine, silent agent: frames go one way
  engine-echo    real engine, echo agent with the long greeting: every caller frame makes
                 the turn controller emit one agent frame, so FRAME → AUDIO is a round trip
  sock-raw       the same socket to a peer that only echoes: the transport without the
                 engine's work, comparable with the shared-memory rows
  shm-busy       SPSC rings in multiprocessing.shared_memory, receivers busy-polling
  shm-sleep      the same, receivers sleeping 1 ms between polls

Paced runs send a burst of S frames every 20 ms like the media clock; fast runs send as
fast as the receiver takes them. The other process's CPU comes from
/proc/<pid>/task/*/schedstat (ns): /proc/<pid>/stat's utime+stime count 10 ms ticks, too
coarse for one call's frames over a few seconds (it is the fallback).

The runs: transport_sock.py (socket), transport_shm.py (shared memory), both on
transport_harness.py (processes, CPU, the sending loops, the receiving thread); the table,
conclusion and plot: transport_report.py.

Run as a module only to start a benchmark peer: `python -m gateway.bench.transport peer-...`.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from engine.agents.prompts import load_prompt
from engine.session import FRAME_SAMPLES
from engine.turns.controller import TurnSettings
from gateway.bench import transport_report
from gateway.bench.transport_harness import PEER_MODULE, TICK_S
from gateway.bench.transport_result import FAST_TRANSPORTS, TRANSPORTS, Result
from gateway.bench.transport_shm import peer_shm, run_shm
from gateway.bench.transport_sock import EngineProcess, peer_sock, run_engine, run_sock_raw

S_VALUES = (1, 4, 16, 64)
QUICK_S_VALUES = (1, 16)
FRAMES_PER_TICK = 256  # paced runs last frames/256 ticks: 78 ticks (1.6 s) at the default 20000
MIN_TICKS = 10
QUICK_TICKS = 25
QUICK_FAST_FRAMES = 2000
DEFAULT_PLOT = Path("artifacts/bench_transport.png")

SILENT: dict[str, object] = {"agent": "silent"}
ECHO: dict[str, object] = {"agent": "echo", "greeting": "long"}


def _echo_ticks_available() -> int:
    """Agent frames the long greeting has left after the lead: one answers each caller frame."""
    greeting = load_prompt("long")
    assert greeting is not None
    return -(-greeting.size // FRAME_SAMPLES) - TurnSettings().lead_frames - 1


def _plan(frames: int, quick: bool) -> Iterator[tuple[str, str, int, int]]:
    """(transport, mode, S, ticks or frames) in run order."""
    s_values = QUICK_S_VALUES if quick else S_VALUES
    ticks = QUICK_TICKS if quick else max(MIN_TICKS, frames // FRAMES_PER_TICK)
    ticks = min(ticks, _echo_ticks_available())
    for s in s_values:
        for name in TRANSPORTS:
            yield name, "paced", s, ticks
    fast_frames = min(frames, QUICK_FAST_FRAMES) if quick else frames
    for name in FAST_TRANSPORTS:
        yield name, "fast", max(s_values), fast_frames


def _measure_one(eng: EngineProcess, tmp: Path, name: str, mode: str, sessions: int, amount: int, quick: bool) -> Result:
    if name.startswith("engine-"):
        agent = ECHO if name == "engine-echo" else SILENT
        return run_engine(eng, agent, sessions, mode, amount, quick)
    if name == "sock-raw":
        return run_sock_raw(tmp, sessions, mode, amount, quick)
    return run_shm(tmp, name.removeprefix("shm-"), sessions, mode, amount, quick)


def _progress(text: str) -> None:
    print(f"bench transport: {text}", file=sys.stderr, flush=True)


def _describe(r: Result) -> str:
    parts = [f"send {r.send_cpu_us:.1f} µs/frame", f"peer {r.peer_cpu_us:.1f} µs/frame"]
    if r.rtt_p99_ms is not None:
        parts.append(f"rtt p50 {r.rtt_p50_ms:.2f} / p99 {r.rtt_p99_ms:.2f} ms")
    if r.mode == "fast":
        parts.append(f"{r.frames_per_s / 1000:.0f}k frames/s")
    return ", ".join(parts)


def measure(frames: int, quick: bool = False) -> list[Result]:
    """Every run of the plan, against one engine process; raises RuntimeError if one fails."""
    plan = list(_plan(frames, quick))
    paced_s = sum(a for _, m, _, a in plan if m == "paced") * TICK_S
    _progress(
        f"{len(plan)} runs on {os.cpu_count()} CPUs: paced runs of {plan[0][3]} ticks "
        f"({paced_s:.0f} s in all), fast runs of {plan[-1][3]} frames"
    )
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="talkover-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        eng = EngineProcess(tmp)
        try:
            _progress(f"engine pid {eng.proc.pid} on {eng.path}")
            for i, (name, mode, sessions, amount) in enumerate(plan, 1):
                r = _measure_one(eng, tmp, name, mode, sessions, amount, quick)
                results.append(r)
                _progress(f"[{i}/{len(plan)}] {name} {mode} S={sessions}: {_describe(r)}")
        finally:
            eng.close()
    return results


def report(results: list[Result], plot_path: Path | None = DEFAULT_PLOT) -> int:
    print(transport_report.format_table(results))
    print()
    print(transport_report.conclusion(results))
    if plot_path is not None:
        _progress(transport_report.plot(results, plot_path))
    return 0


def run(frames: int, quick: bool = False, plot_path: Path | None = DEFAULT_PLOT) -> int:
    """`talkover bench transport --frames N`: measure, print the table and the conclusion, plot."""
    if frames < 1:
        print("talkover: --frames must be positive", file=sys.stderr)
        return 2
    try:
        results = measure(frames, quick)
    except (RuntimeError, OSError) as exc:
        print(f"talkover: bench transport failed: {exc}", file=sys.stderr)
        return 1
    return report(results, plot_path)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`talkover bench transport`'s options."""
    p.add_argument("--frames", type=int, default=20000)


def from_args(args: argparse.Namespace) -> int:
    return run(args.frames)


def _peer_main(argv: list[str]) -> int:
    if argv[:1] == ["peer-sock"] and len(argv) == 3:
        return peer_sock(int(argv[1]), argv[2] == "echo")
    if argv[:1] == ["peer-shm"] and len(argv) == 4:
        return peer_shm(argv[1], argv[2], argv[3] == "echo")
    print(f"usage: python -m {PEER_MODULE} peer-sock FD MODE | peer-shm NAME POLL MODE", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_peer_main(sys.argv[1:]))
