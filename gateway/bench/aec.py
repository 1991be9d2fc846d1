"""`talkover bench aec`: echo cancellation and barge-in figures of the per-call media chain.

Five parts, each printed as a table with its baseline side by side, plots under artifacts/:
  1. ERLE and near-end kept on the generated echo corpus (gateway/bench/aec_erle.py), at 16
     and 8 kHz, AEC3 (the chain's settings) next to no AEC;
  2. the noise-suppression / gain choice: the same measures for each candidate on a few paths;
  3. false and true barge-ins through the whole chain (gateway/bench/aec_bargein.py), next
     to the same chain without its echo canceller;
  4. barge-ins on the greeting, before the canceller has converged, on echo-free lines too;
  5. the chain's CPU per frame on an echo-free and an echoing line (gateway/bench/aec_cpu.py),
     AEC3 left out of echo-free lines next to AEC3 kept.
`--short` runs a small corpus (for tests/test_bench_aec.py); the full run takes a few minutes.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from engine.logs import configure_logging
from gateway.bench import aec_bargein as bi
from gateway.bench import aec_cpu
from gateway.bench import aec_erle as er
from gateway.bench.aec_corpus import EchoPathSpec, agent_turns, callers
from gateway.config import REPO_ROOT, MediaConfig

ARTIFACTS = REPO_ROOT / "artifacts"
TARGET_ERLE_DB, G168_DB, KEPT_DB = 35.0, 14.0, -4.0
TARGET_FALSE_PER_100, TARGET_DETECT = 1.0, 0.95


class Progress:
    def __init__(self, what: str, total: int) -> None:
        self.what, self.total, self.done, self.t0 = what, total, 0, time.monotonic()

    def step(self, note: str = "") -> None:
        self.done += 1
        el = time.monotonic() - self.t0
        eta = el / self.done * (self.total - self.done)
        print(f"\r  {self.what}: {self.done}/{self.total} {note[:48]:<48} {el:5.0f}s (eta {eta:4.0f}s)", end="", file=sys.stderr, flush=True)
        if self.done == self.total:
            print(file=sys.stderr)


def _f(v: float, w: int = 5) -> str:
    return f"{v:{w}.1f}" if v == v else " " * (w - 1) + "-"


def erle_part(short: bool) -> list[er.CaseResult]:
    specs = er.corpus(short)
    out: list[er.CaseResult] = []
    prog = Progress("ERLE corpus", 2 * len(specs))
    for rate in (16000, 8000):
        sig = er.Signals(rate)
        for spec in specs:
            out.append(er.run_case(spec, sig, er.AEC))
            out.append(er.run_case(spec, sig, er.NO_AEC))
            prog.step(f"{rate // 1000}k {spec.name}")
    print("\n== Echo cancellation: ERLE (dB) over the echo-active frames of single talk, near-end kept in double talk ==")
    print("   AEC3 = the chain's canceller + APM noise suppression; ERLE capped at 60 dB (int16 floor).")
    print(f"{'rate':>4} {'echo path':<28}|{'1st s':>6}{'1st 2s':>7}{'after':>6}{'min>1s':>7}{'kept':>6}{'fs':>4} |"
          f"{'no AEC: after':>14}{'kept':>6}{'fs':>4} | {'us/fr':>5}")
    for a, n in zip(out[::2], out[1::2]):
        print(f"{a.rate // 1000:>3}k {a.spec.name:<28}|{_f(a.erle_1s, 6)}{_f(a.erle_2s, 7)}{_f(a.erle_after, 6)}"
              f"{_f(a.erle_min_after_1s, 7)}{_f(a.near_kept_db, 6)}{a.false_starts:>4} |{_f(n.erle_after, 14)}"
              f"{_f(n.near_kept_db, 6)}{n.false_starts:>4} | {a.us_per_frame:5.0f}")
    aec = out[::2]
    lin = [r for r in aec if r.spec.linear]
    print("targets:")
    _target(f"ERLE >= {TARGET_ERLE_DB:g} dB within 2 s on linear paths (the 'after' column)", [r.erle_after >= TARGET_ERLE_DB for r in lin])
    _target(f"never below G.168's {G168_DB:g} dB after 1 s (the 'min>1s' column, all paths)", [r.erle_min_after_1s >= G168_DB for r in aec])
    _target(f"near-end kept within {-KEPT_DB:g} dB in double talk (all paths)", [r.near_kept_db >= KEPT_DB for r in aec])
    print("   fs = speech-starts of the chain's detector on the single-talk part (echo only): each one a false barge-in")
    print("   no AEC 'kept' = output/caller power in double talk: the caller untouched plus the whole echo on top")
    return out


def _target(what: str, ok: list[bool]) -> None:
    n = sum(ok)
    print(f"   [{'met' if n == len(ok) else 'NOT met'}] {what}: {n}/{len(ok)} cases")


def noise_part(short: bool) -> list[er.CaseResult]:
    specs = [EchoPathSpec(250, 6, "hybrid", noise_dbfs=-55, seed=11)]
    if not short:
        specs += [EchoPathSpec(100, 12, "room", noise_dbfs=-55, seed=12), EchoPathSpec(500, 0, "hybrid", clip=True, noise_dbfs=-55, seed=13)]
    sig = er.Signals(16000)
    prog = Progress("NS/AGC candidates", len(specs) * len(er.NS_VARIANTS))
    out = []
    for spec in specs:
        for v in er.NS_VARIANTS:
            out.append(er.run_case(spec, sig, v))
            prog.step(v.name)
    print("\n== Noise suppression / gain after the canceller (16 kHz, line noise -55 dBFS) ==")
    print(f"{'echo path':<28} {'candidate':<31}|{'1st 2s':>7}{'after':>6}{'kept':>6}{'noise out':>10}{'fs':>4}{'us/fr':>6}")
    for r in out:
        print(f"{r.spec.name:<28} {r.variant:<31}|{_f(r.erle_2s, 7)}{_f(r.erle_after, 6)}{_f(r.near_kept_db, 6)}"
              f"{_f(r.noise_out_dbfs, 10)}{r.false_starts:>4}{r.us_per_frame:6.0f}")
    print("   noise out = output level (dBFS) where neither side talks; AGC = automatic gain (raises what is left)")
    return out


def bargein_paths(short: bool) -> list[bi.LinePath]:
    if short:
        return [bi.LinePath(EchoPathSpec(60, 6, "hybrid", seed=21), False), bi.LinePath(EchoPathSpec(250, 6, "room", seed=22), True)]
    return [
        bi.LinePath(EchoPathSpec(60, 6, "hybrid", seed=21), False),
        bi.LinePath(EchoPathSpec(250, 6, "hybrid", seed=22), True),
        bi.LinePath(EchoPathSpec(120, 6, "hybrid", clip=True, noise_dbfs=-60, seed=23), True),
        bi.LinePath(EchoPathSpec(450, 6, "hybrid", seed=24), False),
        bi.LinePath(EchoPathSpec(60, 6, "room", seed=25), False),
        bi.LinePath(EchoPathSpec(250, 6, "room", seed=26), True),
        bi.LinePath(EchoPathSpec(400, 6, "room", clip=True, noise_dbfs=-60, seed=27), True),
    ]


def bargein_part(short: bool, cfg: MediaConfig) -> tuple[list[bi.FalseResult], list[bi.TrueResult], list[bi.FalseResult]]:
    turns, cl = agent_turns(), callers()
    paths = bargein_paths(short)
    calls, per_call, trials = (2, 5, 6) if short else (10, 10, 20)
    base_calls = 1 if short else 2  # without AEC the agent interrupts itself several times a turn: fewer turns say it
    levels = (0.0, -10.0) if short else (0.0, -5.0, -10.0)
    no_aec = MediaConfig(**{**asdict(cfg), "aec": False, "noise": "off"})
    prog = Progress("barge-in", len(paths) * (calls + base_calls + len(levels) * trials))
    falses, trues, base = [], [], []
    for p in paths:
        falses.append(bi.false_barge_ins(p, cfg, turns, calls, per_call, np.random.default_rng(1), lambda: prog.step(f"false {p.name}")))
        base.append(bi.false_barge_ins(p, no_aec, turns, base_calls, per_call, np.random.default_rng(1), lambda: prog.step(f"no AEC {p.name}")))
        for db in levels:
            trues.append(bi.true_barge_ins(p, cfg, turns, cl, db, trials, np.random.default_rng(2), lambda: prog.step(f"true {db:g} dB {p.name}")))
    print("\n== Barge-in through the whole chain (CallMedia: AEC3 + NS + Silero detector, ERL 6 dB) ==")
    print(f"{'echo path':<40}|{'false starts / 100 agent turns':>31} |{'no AEC':>8}")
    for f, b in zip(falses, base):
        print(f"{f.path:<40}|{f.per_100:>24.1f} ({f.starts}/{f.turns}) |{b.per_100:>8.1f}")
    print(f"\n{'echo path':<40}{'caller re echo':>15}|{'detected':>10}{'p50 ms':>8}{'p95 ms':>8}")
    for t in trues:
        print(f"{t.path:<40}{t.caller_db:>12g} dB|{t.detected:>5}/{t.trials:<4}{_f(t.pct(50), 8)}{_f(t.pct(95), 8)}")
    allt = [d for t in trues for d in t.delays_ms]
    print(f"{'all paths':<40}{'':>15}|{sum(t.detected for t in trues):>5}/{sum(t.trials for t in trues):<4}"
          f"{_f(float(np.percentile(allt, 50)) if allt else float('nan'), 8)}{_f(float(np.percentile(allt, 95)) if allt else float('nan'), 8)}")
    print("   delay = first audible sample of the caller → end of the tick whose speech-start paused the agent")
    print("targets:")
    _target(f"<= {TARGET_FALSE_PER_100:g} false speech-start per 100 agent turns at ERL 6 dB", [f.per_100 <= TARGET_FALSE_PER_100 for f in falses])
    _target(f">= {TARGET_DETECT:.0%} of barge-ins detected (caller 0 to -10 dB re echo)", [t.rate >= TARGET_DETECT for t in trues])
    return falses, trues, base


def echo_free_paths() -> list[bi.LinePath]:
    """Lines that bring nothing of the agent back (ERL 60 dB, under line noise): most digital
    trunks and softphones with their own canceller."""
    spec = EchoPathSpec(60, 60, "hybrid", noise_dbfs=-65, seed=31)
    return [bi.LinePath(spec, False), bi.LinePath(spec, True)]


def greeting_part(short: bool, cfg: MediaConfig) -> list[bi.TrueResult]:
    """The caller talks over the call's first turn: the canceller has not converged yet (or,
    on an echo-free line, has nothing to converge on)."""
    turns, cl = agent_turns(), callers()
    paths = bargein_paths(short) + echo_free_paths()
    trials, levels = (4 if short else 12), (0.0, -10.0)
    prog = Progress("greeting barge-in", len(paths) * len(levels) * trials)
    res = [
        bi.greeting_barge_ins(p, cfg, turns, cl, db, trials, np.random.default_rng(5), lambda: prog.step(f"{db:g} dB {p.name}"))
        for p in paths
        for db in levels
    ]
    print("\n== Barge-in on the greeting (first turn: canceller not converged; ERL60 = no echo) ==")
    print(f"{'echo path':<40}{'caller re agent':>16}|{'detected':>10}{'p50 ms':>8}{'p95 ms':>8}")
    for t in res:
        print(f"{t.path:<40}{t.caller_db:>13g} dB|{t.detected:>5}/{t.trials:<4}{_f(t.pct(50), 8)}{_f(t.pct(95), 8)}")
    print("targets:")
    _target(f">= {TARGET_DETECT:.0%} detected when the caller talks as loud as the agent", [t.rate >= TARGET_DETECT for t in res if t.caller_db == 0])
    _target(f">= {TARGET_DETECT:.0%} detected 10 dB below the agent on echo-free lines", [t.rate >= TARGET_DETECT for t in res if t.caller_db < 0 and "ERL60" in t.path])
    return res


def plots(erle: list[er.CaseResult], trues: list[bi.TrueResult], falses: list[bi.FalseResult], base: list[bi.FalseResult], tag: str) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plots (pip install '.[bench]')", file=sys.stderr)
        return []
    ARTIFACTS.mkdir(exist_ok=True)
    paths = []
    fig, ax = plt.subplots(1, 2, figsize=(13, 4.5))
    for k, rate in enumerate((16000, 8000)):
        for r in [r for r in erle if r.rate == rate and r.variant == er.AEC.name][:8]:
            ax[k].plot(np.arange(len(r.trace)) * 0.5, r.trace, label=r.spec.name)
        ax[k].axhline(TARGET_ERLE_DB, ls="--", c="k", lw=0.8)
        ax[k].axhline(G168_DB, ls=":", c="r", lw=0.8)
        ax[k].set(title=f"ERLE per 0.5 s, {rate // 1000} kHz (AEC3; no AEC = 0 dB)", xlabel="s after the echo starts", ylabel="ERLE dB", ylim=(0, 62))
        ax[k].legend(fontsize=6)
    paths.append(ARTIFACTS / f"bench_aec_erle{tag}.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    fig, ax = plt.subplots(1, 2, figsize=(13, 4.5))
    for db in sorted({t.caller_db for t in trues}, reverse=True):
        for kind, style in (("hybrid", "-"), ("room", "--")):
            group = [t for t in trues if t.caller_db == db and t.path.startswith(kind)]
            d = np.sort([x for t in group for x in t.delays_ms])
            if d.size:
                n = sum(t.trials for t in group)
                ax[0].step(d, np.arange(1, d.size + 1) / n, style, where="post", label=f"{kind} paths, caller {db:g} dB re echo")
    ax[0].axvline(150, ls="--", c="k", lw=0.8)
    ax[0].set(title="barge-in detected within (CDF over trials)", xlabel="ms from caller onset to pause", ylabel="fraction", xlim=(0, 1000))
    ax[0].legend(fontsize=6)
    y = np.arange(len(falses))
    ax[1].barh(y - 0.2, [f.per_100 for f in falses], 0.4, label="chain (AEC3)")
    ax[1].barh(y + 0.2, [b.per_100 for b in base], 0.4, label="no AEC")
    for i, (f, b) in enumerate(zip(falses, base)):
        ax[1].text(f.per_100, i - 0.2, f" {f.per_100:g} ({f.starts}/{f.turns})", va="center", fontsize=7)
        ax[1].text(b.per_100, i + 0.2, f" {b.per_100:g}", va="center", fontsize=7)
    ax[1].set_yticks(y, [f.path for f in falses], fontsize=7)
    ax[1].set(title="false speech-starts per 100 agent turns (ERL 6 dB)", xscale="symlog")
    ax[1].legend(fontsize=7)
    paths.append(ARTIFACTS / f"bench_aec_bargein{tag}.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close("all")
    return paths


@dataclass
class AecReport:
    erle: list[er.CaseResult]
    noise: list[er.CaseResult]
    false_starts: list[bi.FalseResult]
    false_starts_no_aec: list[bi.FalseResult]
    barge_ins: list[bi.TrueResult]
    greeting_barge_ins: list[bi.TrueResult]
    plots: list[Path]
    cpu: list[aec_cpu.CpuResult]


def report(short: bool) -> AecReport:
    t0 = time.monotonic()
    print(f"talkover bench aec{' --short' if short else ''}: generated echo corpus, piper joe agent, espeak-ng/pitch-shifted callers")
    cfg = MediaConfig()
    erle = erle_part(short)
    noise = noise_part(short)
    falses, trues, base = bargein_part(short, cfg)
    greeting = greeting_part(short, cfg)
    prog = Progress("chain CPU", 2)
    cpu = aec_cpu.cpu_part(short, prog.step)
    pngs = plots(erle, trues, falses, base, "_short" if short else "")
    for p in pngs:
        print(f"plot: {p}")
    print(f"done in {time.monotonic() - t0:.0f} s")
    return AecReport(erle, noise, falses, base, trues, greeting, pngs, cpu)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`talkover bench aec`'s options."""
    p.add_argument("--short", action="store_true", help="a small corpus (seconds, for tests)")


def from_args(args: argparse.Namespace) -> int:
    configure_logging("warning")  # the simulated calls' own log lines would interleave with the tables
    report(bool(getattr(args, "short", False)))
    return 0
