"""What the network does to each RTP packet of `talkover bench network`: a seeded profile
(delay, jitter, random loss, Gilbert-Elliott bursty loss, reordering) or a recorded trace,
as a per-packet decision (lost, or forwarded after so many ms).

Trace file format (text, one line per packet in arrival order, `#` starts a comment):

    42.5        the packet is forwarded 42.5 ms after it reached the relay
    -           the packet is lost

A trace shorter than the call is replayed from its start. sipp_scenarios/network/make_trace.py
writes the shipped example.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Fate:
    """One packet's fate: lost, or forwarded `delay_ms` after it arrived."""

    lost: bool
    delay_ms: float = 0.0


@dataclass(frozen=True)
class Profile:
    """A seeded impairment. Jitter is uniform in ±jitter_ms around delay_ms (as netem's
    `delay D J` does), so with jitter above the 20 ms packet spacing packets also reorder.
    Bursty loss is a Gilbert-Elliott chain: good→bad with ge_enter, bad→good with ge_leave
    (mean burst = 1/ge_leave packets), a packet lost with ge_loss_bad in the bad state and
    ge_loss_good in the good one; steady-state loss = ge_enter/(ge_enter+ge_leave)·ge_loss_bad
    when ge_loss_good is 0. Reordering holds a packet back reorder_ms more (the next packets
    overtake it)."""

    name: str
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0  # independent random loss
    ge_enter: float = 0.0
    ge_leave: float = 1.0
    ge_loss_bad: float = 1.0
    ge_loss_good: float = 0.0
    reorder: float = 0.0
    reorder_ms: float = 50.0
    trace: str = ""  # a trace file instead of the fields above
    seed: int = 1


PROFILES: dict[str, Profile] = {
    "clean": Profile("clean"),
    "jitter40-loss3": Profile("jitter40-loss3", delay_ms=40, jitter_ms=30, loss=0.03, seed=2),
    # π_bad = 0.0105/(0.0105+0.2) = 5 %, bursts geometric with mean 5 packets
    "burst5": Profile("burst5", delay_ms=20, ge_enter=0.0105, ge_leave=0.2, seed=3),
    "reorder2": Profile("reorder2", delay_ms=20, reorder=0.02, reorder_ms=50, seed=4),
}
TRACE_DIR = Path(__file__).resolve().parents[2] / "sipp_scenarios" / "network"
EXAMPLE_TRACE = TRACE_DIR / "wifi_spikes.trace"


class Impairment(Protocol):
    def next(self) -> Fate: ...


class SeededImpairment:
    """A profile's packets, reproducible from its seed (and a call index, so that concurrent
    calls through one relay each get their own stream)."""

    def __init__(self, profile: Profile, stream: int = 0) -> None:
        self.p = profile
        self.rng = random.Random(f"{profile.seed}:{stream}")
        self.bad = False

    def _lost(self) -> bool:
        p, rng = self.p, self.rng
        if p.ge_enter > 0:
            self.bad = (rng.random() >= p.ge_leave) if self.bad else (rng.random() < p.ge_enter)
            if rng.random() < (p.ge_loss_bad if self.bad else p.ge_loss_good):
                return True
        return p.loss > 0 and rng.random() < p.loss

    def next(self) -> Fate:
        p, rng = self.p, self.rng
        lost = self._lost()
        delay = p.delay_ms + (rng.uniform(-p.jitter_ms, p.jitter_ms) if p.jitter_ms else 0.0)
        if p.reorder > 0 and rng.random() < p.reorder:
            delay += p.reorder_ms
        return Fate(True) if lost else Fate(False, max(0.0, delay))


class TraceImpairment:
    """A recorded trace replayed packet by packet (from an offset per call, so concurrent
    calls do not see the same spikes at the same moment)."""

    def __init__(self, fates: list[Fate], stream: int = 0) -> None:
        if not fates:
            raise ValueError("an empty trace")
        self.fates = fates
        self.i = (stream * 997) % len(fates)

    def next(self) -> Fate:
        fate = self.fates[self.i]
        self.i = (self.i + 1) % len(self.fates)
        return fate


def read_trace(path: Path) -> list[Fate]:
    fates = []
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line in ("-", "lost"):
            fates.append(Fate(True))
            continue
        try:
            delay = float(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{n}: {raw!r} is neither a delay in ms nor '-'") from exc
        if delay < 0:
            raise ValueError(f"{path}:{n}: negative delay {delay}")
        fates.append(Fate(False, delay))
    return fates


def write_trace(path: Path, fates: list[Fate], header: str = "") -> None:
    lines = [f"# {h}" for h in header.splitlines()]
    lines += ["-" if f.lost else f"{f.delay_ms:.1f}" for f in fates]
    path.write_text("\n".join(lines) + "\n")


def trace_profile(path: Path) -> Profile:
    return Profile(f"trace:{path.stem}", trace=str(path))


def impairment(profile: Profile, stream: int = 0) -> Impairment:
    if profile.trace:
        return TraceImpairment(read_trace(Path(profile.trace)), stream)
    return SeededImpairment(profile, stream)


def burst_lengths(fates: list[Fate]) -> list[int]:
    """Lengths of the runs of consecutive lost packets."""
    runs, n = [], 0
    for f in fates:
        if f.lost:
            n += 1
        elif n:
            runs.append(n)
            n = 0
    if n:
        runs.append(n)
    return runs
