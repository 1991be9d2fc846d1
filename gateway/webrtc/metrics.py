"""Prometheus metrics of the WebRTC worker (multiprocess: aggregated by the supervisor).
Calls in progress and call outcomes are counted in gateway/metrics.py with the SIP calls."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

OFFERS = Counter("talkover_webrtc_offers_total", "WebRTC offers by outcome", ["outcome"])
CONNECT_SECONDS = Histogram(
    "talkover_webrtc_connect_seconds", "Offer received to ICE+DTLS connected",
    buckets=(0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10),
)
INBOUND_GAPS = Counter(
    "talkover_webrtc_inbound_gaps_total", "Ticks with no caller frame ready (silence given to the chain)"
)
CLOCK_LATE = Counter("talkover_webrtc_clock_late_total", "Times the media clock was more than 200 ms late and skipped ticks")
PEER_CONNECTIONS = Gauge(
    "talkover_webrtc_peer_connections", "Open aiortc peer connections", multiprocess_mode="livesum"
)
