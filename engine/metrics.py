"""Prometheus metrics of the engine process (aggregated by the supervisor's /metrics)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

SLOTS_IN_USE = Gauge("talkover_engine_slots_in_use", "Engine slots held by live sessions", multiprocess_mode="livesum")
SLOTS_TOTAL = Gauge("talkover_engine_slots", "Engine slots configured", multiprocess_mode="livesum")
SESSIONS = Counter("talkover_engine_sessions_total", "Sessions opened, by result", ["result"])
BARGE_INS = Counter("talkover_barge_ins_total", "Barge-in pauses by outcome", ["outcome"])
SEND_DROPS = Counter("talkover_engine_send_drops_total", "Messages to a worker dropped (its socket was full)")
