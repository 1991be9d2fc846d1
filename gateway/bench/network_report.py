"""`talkover bench network`'s figures: per profile and jitter-buffer setting, what pjmedia's
jitter buffer reported at the end of each call (the worker's "call ended" log line), the
network the relay made, the oracle, the table and the delay-CDF plot.

What each column is:
- jb mean / max: pjmedia's jbuf delay statistic, i.e. how long frames waited in the buffer
  (its occupancy in 20 ms frames when a frame is taken), mean over the calls' frames and max.
- jb p95~: pjmedia keeps mean/min/max/dev only, so this is mean + 1.645·dev (the normal
  95th percentile), pooled over calls and clipped to the max: an estimate, marked "~".
- late %: frames the buffer discarded (arrived too late, or dropped by the progressive
  discard to shrink the delay) per expected frame (received + lost, RTCP's counts).
- PLC %: frames concealed (lost: missing when due; empty: taken from an empty buffer,
  including before the first packet) per expected frame.
- oracle: the smallest FIXED playout delay D (from the moment the packet reached the relay)
  that loses the same fraction of packets to lateness as the buffer discarded, from the
  relay's per-packet network delays; "oracle wait" = D − the mean network delay of the packets
  it plays, the time those packets would have waited: the figure comparable to jb mean.
  pjmedia's figures are a snapshot at most 1 s old when the caller hangs up (the worker reads
  them once a second); the relay's cover the whole call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.bench import plotting

P95_Z = 1.645


@dataclass
class ProfileRun:
    setting: str
    profile: str
    calls: int = 0
    failed: int = 0
    relay_packets: int = 0
    relay_lost: int = 0
    delays_ms: list[float] = field(default_factory=list)  # delivered packets, all calls
    jb: list[dict[str, Any]] = field(default_factory=list)  # pjmedia's stats per call
    error: str = ""

    def _sum(self, key: str) -> int:
        return sum(int(s.get(key, 0)) for s in self.jb)

    @property
    def expected(self) -> int:
        return self._sum("rx_packets") + max(0, self._sum("rx_lost"))

    @property
    def net_loss_pct(self) -> float:
        return 100 * self.relay_lost / self.relay_packets if self.relay_packets else math.nan

    @property
    def jb_mean_ms(self) -> float:
        w = [max(1, int(s.get("rx_packets", 0))) for s in self.jb]
        return sum(wi * s["jb_delay_avg_ms"] for wi, s in zip(w, self.jb)) / sum(w) if self.jb else math.nan

    @property
    def jb_max_ms(self) -> float:
        return max((float(s["jb_delay_max_ms"]) for s in self.jb), default=math.nan)

    @property
    def jb_p95_ms(self) -> float:
        if not self.jb:
            return math.nan
        mean = self.jb_mean_ms
        w = [max(1, int(s.get("rx_packets", 0))) for s in self.jb]
        var = sum(wi * (s.get("jb_delay_dev_ms", 0) ** 2 + (s["jb_delay_avg_ms"] - mean) ** 2)
                  for wi, s in zip(w, self.jb)) / sum(w)  # fmt: skip
        return min(self.jb_max_ms, mean + P95_Z * math.sqrt(var))

    def pct(self, *keys: str) -> float:
        n = self.expected
        return 100 * sum(self._sum(k) for k in keys) / n if n else math.nan

    @property
    def late_pct(self) -> float:
        return self.pct("jb_discard")

    @property
    def plc_pct(self) -> float:
        return self.pct("jb_lost", "jb_empty")

    @property
    def oracle_ms(self) -> float:
        return oracle_delay(self.delays_ms, self.relay_packets, self.late_pct / 100)

    @property
    def oracle_wait_ms(self) -> float:
        d = self.oracle_ms
        played = [x for x in self.delays_ms if x <= d]
        return d - sum(played) / len(played) if played else math.nan

    @property
    def net_mean_ms(self) -> float:
        return sum(self.delays_ms) / len(self.delays_ms) if self.delays_ms else math.nan


def oracle_delay(delays_ms: list[float], expected: int, late_fraction: float) -> float:
    """The smallest fixed delay D with at most late_fraction·expected packets later than D
    (packets the network lost are lost whatever D is, so they are not counted)."""
    if not delays_ms:
        return math.nan
    ordered = sorted(delays_ms)
    allowed = max(0, math.floor(late_fraction * expected + 1e-9))
    return ordered[max(0, len(ordered) - 1 - allowed)]


def _f(x: float, digits: int = 0) -> str:
    return "-" if math.isnan(x) else f"{x:.{digits}f}"


COLUMNS = ("setting", "profile", "calls", "net loss%", "net mean", "jb mean", "jb p95~", "jb max",
           "late%", "PLC%", "oracle D", "oracle wait")  # fmt: skip


def rows(runs: list[ProfileRun]) -> list[list[str]]:
    out = []
    for r in runs:
        out.append([r.setting, r.profile, f"{r.calls - r.failed}/{r.calls}", _f(r.net_loss_pct, 1),
                    _f(r.net_mean_ms), _f(r.jb_mean_ms), _f(r.jb_p95_ms), _f(r.jb_max_ms),
                    _f(r.late_pct, 1), _f(r.plc_pct, 1), _f(r.oracle_ms), _f(r.oracle_wait_ms)])  # fmt: skip
    return out


def table(runs: list[ProfileRun], settings: dict[str, dict[str, Any]]) -> str:
    body = rows(runs)
    widths = [max(len(c), *(len(row[i]) for row in body)) if body else len(c) for i, c in enumerate(COLUMNS)]
    lines = ["talkover bench network: real calls through the impairment relay (delays in ms)"]
    for name, values in settings.items():
        lines.append(f"  {name}: [sip.jitter] " + (", ".join(f"{k}={v}" for k, v in values.items()) or "defaults"))
    lines.append("  ".join(c.rjust(w) for c, w in zip(COLUMNS, widths)))
    lines += ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in body]
    lines.append("  jb p95~ = mean + 1.645 dev (pjmedia keeps no percentiles); oracle D = the smallest fixed delay "
                 "losing the same fraction late; oracle wait = D - mean network delay (compare with jb mean)")
    errors = [f"  {r.setting}/{r.profile}: {r.error}" for r in runs if r.error]
    return "\n".join(lines + errors)


def plot(runs: list[ProfileRun], path: Path) -> str:
    plt = plotting.pyplot()
    if plt is None:
        return plotting.NO_MATPLOTLIB
    profiles = list(dict.fromkeys(r.profile for r in runs))
    settings = list(dict.fromkeys(r.setting for r in runs))
    colors = plt.get_cmap("tab10")
    fig, axes = plt.subplots(1, len(profiles), figsize=(4 * len(profiles), 3.6), squeeze=False)
    for ax, profile in zip(axes[0], profiles):
        for i, setting in enumerate(settings):
            run = next((r for r in runs if r.profile == profile and r.setting == setting), None)
            if run is None or not run.delays_ms:
                continue
            d = sorted(run.delays_ms)
            ax.plot(d, [(k + 1) / len(d) for k in range(len(d))], color=colors(i), lw=1, label=f"{setting} network")
            if not math.isnan(run.jb_mean_ms):
                ax.axvline(run.net_mean_ms + run.jb_mean_ms, color=colors(i), ls="-", alpha=0.6,
                           label=f"{setting} net+jb mean")  # fmt: skip
            ax.axvline(run.oracle_ms, color=colors(i), ls="--", alpha=0.8, label=f"{setting} oracle D")
        ax.set_title(profile)
        ax.set_xlabel("delay from relay arrival (ms)")
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("CDF of delivered packets")
    axes[0][-1].legend(fontsize=6, loc="lower right")
    return plotting.save(fig, path)
