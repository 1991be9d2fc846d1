"""Prometheus metrics of the batch scheduler (engine process; aggregated by the supervisor)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

TICK_SECONDS = Histogram(
    "talkover_engine_tick_seconds", "Wall time of one batched model step (encoder, LM, vocoder) for all ready slots",
    buckets=(0.002, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.12, 0.2, 0.5),
)
TICK_BATCH = Histogram("talkover_engine_tick_batch", "Slot-steps per tick", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
TICK_LATE = Counter("talkover_engine_ticks_late_total", "Ticks that started more than one model frame late")
