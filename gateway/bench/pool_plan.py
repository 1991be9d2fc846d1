"""`talkover bench pool`'s plan (worker counts, hold and rate steps) and the records a run fills:
a step, the run of one worker count, the whole result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.bench.pool_meter import Usage

CALLS_PER_WORKER = 4  # pjsua2's compiled cap (DESIGN.md)
CALLERS = ("loop", "turns")


@dataclass
class PoolPlan:
    workers: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16, 32])
    hold_steps: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 150, 192, 256])
    hold_s: float = 60.0
    rates: list[float] = field(default_factory=lambda: [0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 50, 64])
    rate_s: float = 30.0
    call_s: float = 2.0
    underrun_budget: float = 0.0  # playout underruns tolerated per call-minute (0 = the criterion)
    workdir: str = ""  # keep every server log and SIPp trace here ("" = a temp dir, removed)
    quick: bool = False
    caller: str = "loop"  # "loop": looping speech (continuous double talk); "turns": speech, then pauses
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # the servers' config overrides (--set)
    rtp_file: str = ""  # set by the bench: what SIPp streams

    @classmethod
    def quick_plan(cls) -> PoolPlan:
        return cls(workers=[1, 2], hold_steps=[2, 6], hold_s=5.0, rates=[1.0], rate_s=3.0, call_s=1.5, quick=True)

    def problem(self) -> str:
        if not self.workers or any(w < 1 or w > 256 for w in self.workers) or sorted(self.workers) != self.workers:
            return "--workers must be increasing numbers of workers, 1-256"
        if not self.hold_steps or any(n < 1 for n in self.hold_steps) or sorted(self.hold_steps) != self.hold_steps:
            return "--hold-steps must be increasing call counts >= 1"
        if not self.rates or any(r <= 0 for r in self.rates) or sorted(self.rates) != self.rates:
            return "--rates must be increasing positive calls per second"
        if self.hold_s < 3 or self.rate_s < 1 or self.call_s < 1:
            return "--hold-s must be >= 3, --rate-s and --call-s >= 1"
        if self.caller not in CALLERS:
            return f"--caller must be one of {', '.join(CALLERS)}"
        if self.underrun_budget < 0:
            return "--underrun-budget must be >= 0 underruns per call-minute"
        if self.workdir and Path(self.workdir).exists() and any(Path(self.workdir).iterdir()):
            return f"--workdir {self.workdir} is not empty"
        return ""


@dataclass
class PoolStep:
    workers: int
    phase: str  # "hold" or "rate"
    value: float  # N calls or calls per second
    sipp_rc: int | None = None
    placed: int = 0
    ok: int = 0
    failed: int = 0
    ended: int = 0  # "call ended" records of this step's calls
    both_ways: int = 0
    underruns: int = 0
    call_minutes: float = 0.0  # of the calls that ended
    underrun_budget: float = 0.0  # per call-minute (PoolPlan.underrun_budget)
    retried: int = 0  # INVITEs a worker refused (503/486) that the front door sent elsewhere
    tick_gap_max_ms: float = 0.0
    usage: Usage = field(default_factory=Usage)
    response_ms: list[float] = field(default_factory=list)
    error: str = ""
    unreadable: list[str] = field(default_factory=list)  # result files/records that could not be read

    @property
    def passed(self) -> bool:
        audio = self.both_ways == self.ended == self.ok
        underruns_ok = self.underruns <= self.underrun_budget * self.call_minutes
        readable = not self.unreadable
        return readable and not self.error and self.sipp_rc == 0 and self.failed == 0 and underruns_ok and audio

    @property
    def reason(self) -> str:
        """Why the step did not pass, as far as it is known (for the tables)."""
        if self.unreadable:
            return "unreadable: " + "; ".join(self.unreadable)
        return self.error


@dataclass
class PoolRun:
    workers: int
    idle: Usage = field(default_factory=Usage)
    first_call_ms: list[float] = field(default_factory=list)  # INVITE->200 of each worker's first call
    hold: list[PoolStep] = field(default_factory=list)
    rate: list[PoolStep] = field(default_factory=list)
    server_rc: int | None = None
    error: str = ""

    @property
    def cap(self) -> int:
        return CALLS_PER_WORKER * self.workers

    @property
    def max_held(self) -> int:
        return max([int(s.value) for s in self.hold if s.passed] or [0])

    @property
    def max_rate(self) -> float:
        return max([s.value for s in self.rate if s.passed] or [0.0])


@dataclass
class PoolResult:
    plan: PoolPlan
    runs: list[PoolRun] = field(default_factory=list)
    load_avg: list[float] = field(default_factory=list)
    stopped_early: str = ""
