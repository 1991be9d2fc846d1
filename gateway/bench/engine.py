"""`talkover bench engine`: the batched model step against the same streams run one by one.

For a sweep of stream counts up to `--streams`, every stream is a live, speaking slot of one
BatchScheduler fed noise-like caller audio (the worst case: encoder, LM and vocoder all run).
Per count it measures the wall time of each tick (p50/p99), the real-time factor (tick time /
model frame), and the same streams stepped one by one in single-slot schedulers (unbatched),
in the same run. A count is real time when the tick's p99 fits in one model frame. Also
printed: parameters, per-stream state memory and FLOPs per stream-second (torch's flop
counter over one step). The plot goes to artifacts/bench_engine_<config>_<device>.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


@dataclass
class Row:
    streams: int
    p50_ms: float
    p99_ms: float
    solo_p50_ms: float  # the same streams one by one: sum of the single steps per tick
    solo_p99_ms: float
    frame_ms: float

    @property
    def rtf(self) -> float:
        return self.p50_ms / self.frame_ms

    @property
    def realtime(self) -> bool:
        return self.p99_ms <= self.frame_ms

    @property
    def solo_realtime(self) -> bool:
        return self.solo_p99_ms <= self.frame_ms


def _sweep(limit: int) -> list[int]:
    counts, n = [], 1
    while n < limit:
        counts.append(n)
        n *= 2
    return counts + [limit]


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _feed(sched, slots: range, frame_bytes: int, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    for slot in slots:
        pcm = (rng.standard_normal(frame_bytes // 2) * 3000).astype(np.int16).tobytes()
        sched.push(slot, pcm)


def _tick_times(model, streams: int, ticks: int, warmup: int, device: str, cuda_graphs: bool) -> list[float]:  # type: ignore[no-untyped-def]
    from engine.batch.scheduler import BatchScheduler

    sched = BatchScheduler(model, streams, cuda_graphs=cuda_graphs)
    for s in range(streams):
        sched.join(s)
        sched.set_speaking(s, True)
    rng = np.random.default_rng(streams)
    frame_bytes = model.cfg.frame_samples * 2
    times = []
    for i in range(warmup + ticks):
        _feed(sched, range(streams), frame_bytes, rng)
        _sync(device)
        t0 = time.perf_counter()
        sched.tick()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
        for s in range(streams):
            sched.take(s)
    return times


def _solo_times(model, streams: int, ticks: int, device: str) -> list[float]:  # type: ignore[no-untyped-def]
    """Each stream in its own one-slot scheduler, stepped one after another: time per tick = the sum."""
    from engine.batch.scheduler import BatchScheduler

    scheds = [BatchScheduler(model, 1) for _ in range(streams)]
    for s in scheds:
        s.join(0)
        s.set_speaking(0, True)
    rng = np.random.default_rng(streams)
    frame_bytes = model.cfg.frame_samples * 2
    totals = []
    for i in range(1 + ticks):
        total = 0.0
        for s in scheds:
            _feed(s, range(1), frame_bytes, rng)
            _sync(device)
            t0 = time.perf_counter()
            s.tick()
            _sync(device)
            total += time.perf_counter() - t0
            s.take(0)
        if i >= 1:
            totals.append(total)
    return totals


def flops_per_step(model) -> float:  # type: ignore[no-untyped-def]
    """FLOPs of one single-stream step (matmuls, convolutions, attention), by torch's counter."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from engine.batch.scheduler import BatchScheduler

    sched = BatchScheduler(model, 1)
    sched.join(0)
    sched.set_speaking(0, True)
    sched.push(0, bytes(model.cfg.frame_samples * 2))
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        sched.tick()
    return float(counter.get_total_flops())


def run(config: str, device: str, streams: int, ticks: int, threads: int, cuda_graphs: bool, bf16: bool) -> int:
    import torch

    from engine.model.checkpoint import load_model, resolve_device
    from engine.model.config import ModelConfigError

    if streams < 1 or ticks < 1:
        print("talkover bench engine: --streams and --ticks must be >= 1", file=sys.stderr)
        return 2
    try:
        dev = str(resolve_device(device))
        model = load_model(config, dev)
    except ModelConfigError as exc:
        print(f"talkover bench engine: {exc}", file=sys.stderr)
        return 2
    torch.set_num_threads(threads)
    if bf16 and dev.startswith("cuda"):
        model.lm_in_bf16()
    use_graphs = cuda_graphs and dev.startswith("cuda")
    cfg = model.cfg
    params = sum(model.parameter_counts().values())
    flops = flops_per_step(model) * cfg.frame_rate
    state_bytes = model.init_state(1).bytes()
    print(f"engine bench: config {cfg.name} ({params / 1e6:.1f} M params), device {dev}, torch threads {threads}, "
          f"frame {cfg.frame_ms:.0f} ms, {cfg.encoder.n_codebooks}x{cfg.encoder.codebook_size} codes "
          f"({cfg.bitrate:.0f} bit/s), {ticks} ticks per point" + (", CUDA graphs" if use_graphs else "")
          + (", LM bf16" if bf16 and dev.startswith("cuda") else ""))
    print(f"  {flops / 1e9:.2f} GFLOP per stream-second; state {state_bytes / 2**20:.2f} MiB per stream", flush=True)
    _tick_times(model, 1, 3, 3, dev, False)  # first calls pay for lazy initialisation: keep them out
    rows: list[Row] = []
    counts = _sweep(streams)
    for i, n in enumerate(counts):
        print(f"  [{i + 1}/{len(counts)}] {n} streams: batched...", end="", file=sys.stderr, flush=True)
        batched = np.array(_tick_times(model, n, ticks, 3, dev, use_graphs)) * 1000
        print(" one by one...", end="", file=sys.stderr, flush=True)
        solo = np.array(_solo_times(model, n, ticks, dev)) * 1000
        rows.append(Row(n, float(np.percentile(batched, 50)), float(np.percentile(batched, 99)),
                        float(np.percentile(solo, 50)), float(np.percentile(solo, 99)), cfg.frame_ms))
        print(f" {rows[-1].p50_ms:.1f} / {rows[-1].solo_p50_ms:.1f} ms", file=sys.stderr, flush=True)
        if rows[-1].p50_ms > 4 * cfg.frame_ms and rows[-1].solo_p50_ms > 4 * cfg.frame_ms:
            print(f"  stopping the sweep: {n} streams take over 4 frames per tick", file=sys.stderr)
            break
    _print_table(rows, state_bytes)
    path = _plot(rows, cfg.name, dev)
    print(f"plot: {path}")
    return 0


def _print_table(rows: list[Row], state_bytes: int) -> None:
    print(f"\n{'streams':>7} | {'batched tick p50':>16} {'p99':>8} {'RTF':>6} {'RT':>3} | "
          f"{'one-by-one p50':>14} {'p99':>8} {'RTF':>6} {'RT':>3} | {'speed-up':>8} | {'state/stream':>12}")
    for r in rows:
        print(f"{r.streams:>7} | {r.p50_ms:>13.1f} ms {r.p99_ms:>5.1f} ms {r.rtf:>6.3f} {'yes' if r.realtime else 'no':>3} | "
              f"{r.solo_p50_ms:>11.1f} ms {r.solo_p99_ms:>5.1f} ms {r.solo_p50_ms / r.frame_ms:>6.3f} "
              f"{'yes' if r.solo_realtime else 'no':>3} | {r.solo_p50_ms / r.p50_ms:>7.2f}x | "
              f"{state_bytes / 2**20:>8.2f} MiB")
    best = max((r.streams for r in rows if r.realtime), default=0)
    best_solo = max((r.streams for r in rows if r.solo_realtime), default=0)
    print(f"\nlargest real-time stream count (tick p99 <= {rows[0].frame_ms:.0f} ms): batched {best}, one by one {best_solo}"
          f" (of the counts measured)")


def _plot(rows: list[Row], name: str, device: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"bench_engine_{name}_{device.replace(':', '')}.png"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n = [r.streams for r in rows]
    ax.plot(n, [r.p50_ms for r in rows], "o-", label="batched tick p50")
    ax.plot(n, [r.p99_ms for r in rows], "o--", label="batched tick p99")
    ax.plot(n, [r.solo_p50_ms for r in rows], "s-", label="one by one p50")
    ax.axhline(rows[0].frame_ms, color="red", lw=1, label=f"real time ({rows[0].frame_ms:.0f} ms frame)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("streams")
    ax.set_ylabel("time per tick (ms)")
    ax.set_title(f"engine step, config {name} on {device}")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`talkover bench engine`'s options."""
    p.add_argument("--config", default="tiny", help="tiny, base, or a checkpoint directory")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--streams", type=int, default=16, help="the sweep goes 1, 2, 4, ... up to this")
    p.add_argument("--ticks", type=int, default=25, help="timed ticks per point")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--no-cuda-graphs", action="store_true")
    p.add_argument("--no-bf16", action="store_true")


def from_args(a: argparse.Namespace) -> int:
    return run(a.config, a.device, a.streams, a.ticks, a.threads, not a.no_cuda_graphs, not a.no_bf16)
