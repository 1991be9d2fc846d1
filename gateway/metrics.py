"""Prometheus metrics of the gateway workers.

Every talkover process writes its metrics into the supervisor's multiprocess directory
(PROMETHEUS_MULTIPROC_DIR, set by the supervisor before any child starts); the supervisor's
`/metrics` aggregates them. Gauges say how they combine across processes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CALLS_ACTIVE = Gauge("talkover_calls_active", "Calls in progress (offered to ended)", multiprocess_mode="livesum")
CALLS = Counter("talkover_calls_total", "Calls offered, by outcome", ["outcome"])
CALL_DURATION = Histogram(
    "talkover_call_duration_seconds", "Connected call duration", buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600)
)
REJECTED_AT_CAP = Counter(
    "talkover_sip_rejected_by_pjsua_total", "INVITEs pjsua answered itself (486 past its call cap)"
)
UNDERRUNS = Counter("talkover_playout_underruns_total", "Agent frames the engine produced too late")
FRAMES_DROPPED = Counter("talkover_engine_frames_dropped_total", "Messages to the engine dropped (engine away or full)")
ENGINE_CONNECTED = Gauge("talkover_engine_connected", "Workers connected to the engine", multiprocess_mode="livesum")
REGISTRATION_UP = Gauge(
    "talkover_registration_up", "1 while the outbound registration is active", ["aor"], multiprocess_mode="livemax"
)
REGISTRATION_CODE = Gauge(
    "talkover_registration_status_code", "Last REGISTER final status", ["aor"], multiprocess_mode="livemax"
)
JB_DELAY = Histogram(
    "talkover_jitter_buffer_delay_ms",
    "Mean jitter-buffer delay per call",
    buckets=(10, 20, 40, 60, 80, 100, 150, 200, 300, 500),
)
JB_FRAMES = Counter(
    "talkover_jitter_buffer_frames_total", "Jitter-buffer frame events per kind: lost (PLC), discard, empty", ["kind"]
)
RTP_LOSS = Counter("talkover_rtp_packets_lost_total", "RTP packets lost on receive (RTCP statistics)")
