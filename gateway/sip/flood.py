"""Per-source-IP INVITE rate limit: a token bucket per address, allow-listed CIDRs exempt.

The worker asks `FloodGuard.admit(source)` for every new INVITE before it touches the
dialplan, the engine or media; a refused INVITE gets 503 with Retry-After. Only INVITEs
that create a call reach this point (pjsua2 answers retransmissions and in-dialog requests
itself), so the bucket counts call attempts. Config: `[sip.flood]` (gateway/config.py).

onIncomingCall may run on any of pjsua's SIP threads, hence the lock; the whole check is a
few dict operations. A refusal is logged the first time a source goes over its limit and
then at most every LOG_EVERY_S per source, with the number refused meanwhile, so a flood
cannot flood the log too.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable

from prometheus_client import Counter

from engine.logs import get_logger
from gateway.config import FloodConfig

log = get_logger(component="flood")

FLOOD_REJECTED = Counter("talkover_sip_flood_rejected_total", "INVITEs refused by the per-source rate limit (503)")
LOG_EVERY_S = 10.0
MAX_SOURCES = 10_000  # buckets kept; beyond it, full (idle) buckets are forgotten first

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float  # when `tokens` was last brought up to date
    refused: int = 0  # refused since the last log line about this source
    logged_at: float = -math.inf


def source_ip(source: str) -> IpAddress | None:
    """The address part of pjsip's "host:port" / "[v6]:port" (or a bare address); None if
    it is not an IP address."""
    text = source.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")] if "]" in text else text[1:]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class FloodGuard:
    def __init__(self, cfg: FloodConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = cfg.invites_per_s
        self.burst = cfg.burst
        self.allow = [ipaddress.ip_network(c, strict=True) for c in cfg.allow]
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()
        self.refused = 0

    def allow_listed(self, source: str) -> bool:
        ip = source_ip(source)
        return ip is not None and any(ip in net for net in self.allow)

    def admit(self, source: str) -> bool:
        """True if an INVITE from `source` ("ip:port") may proceed; False → answer 503."""
        if self.rate <= 0 or self.allow_listed(source):
            return True
        ip = source_ip(source)
        key = str(ip) if ip is not None else source
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= MAX_SOURCES:
                    self._forget(now)
                bucket = self._buckets[key] = _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * self.rate)
            bucket.stamp = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return True
            bucket.refused += 1
            self.refused += 1
            due = now - bucket.logged_at >= LOG_EVERY_S
            refused = bucket.refused
            if due:
                bucket.refused, bucket.logged_at = 0, now
        FLOOD_REJECTED.inc()
        if due:
            log.warning(
                "INVITE flood limit: 503", source=key, refused=refused, invites_per_s=self.rate, burst=self.burst
            )
        return False

    def _forget(self, now: float) -> None:
        """Drops buckets that have refilled (idle sources); if that is not enough (a flood
        from many addresses), the least recently seen half."""
        full_after = self.burst / self.rate
        idle = [k for k, b in self._buckets.items() if now - b.stamp >= full_after]
        for k in idle:
            del self._buckets[k]
        if len(self._buckets) >= MAX_SOURCES:
            oldest = sorted(self._buckets, key=lambda k: self._buckets[k].stamp)
            for k in oldest[: len(oldest) // 2]:
                del self._buckets[k]
