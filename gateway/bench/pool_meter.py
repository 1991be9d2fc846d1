"""What `talkover bench pool` measures over a window: CPU of every process of the server (by
group) and of SIPp from /proc/<pid>/stat, the machine's busy time from /proc/stat, PSS from
/proc/<pid>/smaps_rollup, and the media chain's per-stage clock-thread time from /metrics
(talkover_media_stage_seconds / _frames, summed over the workers)."""

from __future__ import annotations

import os
import time
import urllib.request
from dataclasses import dataclass, field

from gateway.bench.server import CLK_TCK, BenchError
from gateway.bench.server import cpu_ticks as _ticks

GROUPS = ("workers", "engine", "kamailio", "supervisor")


@dataclass
class Usage:
    """CPU (% of one core) per process group and of the whole machine, over a window."""

    window_s: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # GROUPS + "sipp"
    machine_pct: float = 0.0  # every process on the machine (out of 100 x CPUs)
    stage_pct: dict[str, float] = field(default_factory=dict)  # media stages, clock-thread time
    stage_us: dict[str, float] = field(default_factory=dict)  # mean µs per frame per stage
    pss_mb: float = 0.0  # the server's processes at the window's end

    @property
    def server_pct(self) -> float:
        return sum(self.cpu.get(g, 0.0) for g in GROUPS)


def _process_tree(root: int) -> dict[int, str]:
    """pid → group for `root` and all its descendants."""
    parent: dict[int, int] = {}
    cmd: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = {root: "supervisor"}, [root]
    while frontier:
        pid = frontier.pop()
        for child, ppid in parent.items():
            if ppid == pid and child not in tree:
                c = cmd.get(child, "")
                tree[child] = ("engine" if "engine.server" in c else "workers" if "gateway.sip.worker" in c
                               else "kamailio" if "kamailio" in c else "supervisor")  # fmt: skip
                frontier.append(child)
    return tree


def _pss_mb(pids: list[int]) -> float:
    total_kb = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total_kb += next((int(ln.split()[1]) for ln in f if ln.startswith("Pss:")), 0)
        except OSError:
            continue
    return total_kb / 1024


def _machine_ticks() -> tuple[int, int]:
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]  # (total, idle + iowait)


def _safe_ticks(pid: int) -> int:
    try:
        return _ticks(pid)
    except BenchError:
        return 0


def _stage_totals(http_port: int) -> dict[str, tuple[float, float]]:
    """stage → (seconds, frames) so far, summed over the workers (/metrics)."""
    out: dict[str, tuple[float, float]] = {}
    for line in _metrics_text(http_port).splitlines():
        for name, i in (("talkover_media_stage_seconds_total{", 0), ("talkover_media_stage_frames_total{", 1)):
            if line.startswith(name) and 'stage="' in line:
                stage = line.split('stage="', 1)[1].split('"', 1)[0]
                pair = list(out.get(stage, (0.0, 0.0)))
                pair[i] += float(line.rsplit(None, 1)[-1])
                out[stage] = (pair[0], pair[1])
    return out


def _metrics_text(http_port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


class Meter:
    """Snapshots at construction; `read()` gives the usage since then."""

    def __init__(self, server_pid: int, http_port: int, sipp_pid: int | None = None) -> None:
        self.http_port, self.sipp_pid = http_port, sipp_pid
        self.tree = _process_tree(server_pid)
        self.t0 = time.monotonic()
        self.ticks0 = {pid: _safe_ticks(pid) for pid in self.tree}
        self.sipp0 = _safe_ticks(sipp_pid) if sipp_pid else 0
        self.machine0 = _machine_ticks()
        self.stages0 = _stage_totals(http_port)

    def read(self) -> Usage:
        wall = max(time.monotonic() - self.t0, 1e-9)
        k = 100.0 / CLK_TCK
        cpu = {g: 0.0 for g in GROUPS}
        for pid, group in self.tree.items():
            now = _safe_ticks(pid)
            if now:
                cpu[group] += (now - self.ticks0[pid]) * k / wall
        cpu["sipp"] = (_safe_ticks(self.sipp_pid) - self.sipp0) * k / wall if self.sipp_pid else 0.0
        total1, idle1 = _machine_ticks()
        busy = (total1 - self.machine0[0]) - (idle1 - self.machine0[1])
        machine = 100.0 * (os.cpu_count() or 1) * busy / max(1, total1 - self.machine0[0])
        stages1 = _stage_totals(self.http_port)
        stage_pct, stage_us = {}, {}
        for stage, (secs, frames) in stages1.items():
            s0, f0 = self.stages0.get(stage, (0.0, 0.0))
            stage_pct[stage] = 100.0 * (secs - s0) / wall
            stage_us[stage] = 1e6 * (secs - s0) / (frames - f0) if frames > f0 else 0.0
        return Usage(wall, cpu, machine, stage_pct, stage_us, _pss_mb(list(self.tree)))
