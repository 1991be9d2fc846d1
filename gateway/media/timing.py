"""Per-stage processing time of the media chain, cheap enough for the clock thread.

Times are the clock thread's own CPU time (`stage_clock`, CLOCK_THREAD_CPUTIME_ID), not
wall time: on a loaded machine a preempted stage would otherwise be charged for the other
processes' work (`talkover bench pool` read AEC3 at "10 % of a core per call" that way).
The clock thread only adds integers (`StageTimes.add`: a stage_clock call either side, ~0.6 µs
each, and a few list stores); every `sample_every`-th frame's time is also kept.
`flush()` turns the totals into Prometheus counters and the kept samples into histogram
observations; CallMedia calls it on its own clock thread once a second and at close, so it
never races the accumulation; it costs ~0.2 ms once a second per call (measured with multiprocess metrics).
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram

stage_clock = time.thread_time_ns  # what every stage is timed with: this thread's CPU time, ns

STAGES = ("aec_far", "aec", "ns", "vad", "inbound", "outbound")
AEC_FAR, AEC, NS, VAD, INBOUND, OUTBOUND = range(len(STAGES))

STAGE_SECONDS = Counter(
    "talkover_media_stage_seconds", "Clock-thread CPU time spent per media stage (all frames)", ["stage"]
)
STAGE_FRAMES = Counter("talkover_media_stage_frames", "20 ms frames processed per media stage", ["stage"])
STAGE_FRAME_SECONDS = Histogram(
    "talkover_media_stage_frame_seconds",
    "CPU time of one 20 ms frame per media stage (a sample of the frames)",
    ["stage"],
    buckets=(2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2),
)


class StageTimes:
    __slots__ = ("total_ns", "frames", "max_ns", "samples", "sample_every", "_n", "_flushed_ns", "_flushed_frames")

    def __init__(self, sample_every: int = 10) -> None:
        self.total_ns = [0] * len(STAGES)
        self.frames = [0] * len(STAGES)
        self.max_ns = [0] * len(STAGES)
        self.samples: list[tuple[int, int]] = []  # (stage, ns)
        self._flushed_ns = [0] * len(STAGES)
        self._flushed_frames = [0] * len(STAGES)
        self.sample_every = max(1, sample_every)
        self._n = 0

    def add(self, stage: int, ns: int) -> None:
        self.total_ns[stage] += ns
        self.frames[stage] += 1
        if ns > self.max_ns[stage]:
            self.max_ns[stage] = ns
        if stage == INBOUND:
            self._n += 1
        if self._n % self.sample_every == 0:
            self.samples.append((stage, ns))

    def mean_us(self, stage: int) -> float:
        n = self.frames[stage]
        return self.total_ns[stage] / n / 1000 if n else 0.0

    def summary(self) -> dict[str, float]:
        return {STAGES[i]: round(self.mean_us(i), 1) for i in range(len(STAGES)) if self.frames[i]}

    def flush(self) -> None:
        """Hand what accumulated since the last flush to Prometheus (the totals stay for summary())."""
        for i, name in enumerate(STAGES):
            frames = self.frames[i] - self._flushed_frames[i]
            if frames:
                STAGE_SECONDS.labels(name).inc((self.total_ns[i] - self._flushed_ns[i]) / 1e9)
                STAGE_FRAMES.labels(name).inc(frames)
                self._flushed_ns[i], self._flushed_frames[i] = self.total_ns[i], self.frames[i]
        for stage, ns in self.samples:
            STAGE_FRAME_SECONDS.labels(STAGES[stage]).observe(ns / 1e9)
        self.samples.clear()
