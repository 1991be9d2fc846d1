"""Health of the media clock: the gap between successive 20 ms ticks of one call's port.

pjsua2's conference bridge calls every port once per tick on one thread; a Python thread
hogging the GIL shows up here first as gaps well above 20 ms.
"""

from __future__ import annotations

MAX_BIN_MS = 200


class TickGaps:
    __slots__ = ("_bins", "_last", "max_ms", "count")

    def __init__(self) -> None:
        self._bins = [0] * (MAX_BIN_MS + 1)  # 1 ms bins; the last one is "200 ms or more"
        self._last = 0.0
        self.max_ms = 0.0
        self.count = 0

    def tick(self, now: float) -> None:
        if self._last:
            gap = (now - self._last) * 1000.0
            self._bins[min(int(gap), MAX_BIN_MS)] += 1
            self.count += 1
            if gap > self.max_ms:
                self.max_ms = gap
        self._last = now

    def percentile(self, q: float) -> float:
        if not self.count:
            return 0.0
        rank, seen = q / 100.0 * self.count, 0
        for ms, n in enumerate(self._bins):
            seen += n
            if seen >= rank:
                return float(ms)
        return float(MAX_BIN_MS)

    def summary(self) -> dict[str, float]:
        return {"p50_ms": self.percentile(50), "p99_ms": self.percentile(99), "max_ms": round(self.max_ms, 1)}
