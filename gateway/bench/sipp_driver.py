"""What `talkover bench load` and `bench interruption` share: the gateway under test, SIPp
runs with their statistics and response-time traces, and generated caller audio.

The server is the benches' `talkover serve` (gateway/bench/server.py) with a config of the bench's
own: a dialplan entry per bench, media settings per variant, and the flood limit left ON with
the load generator's address in its explicit allow-list (`[sip.flood] allow`), so the figures
come from the config an operator would run plus one line, not from a disabled limit.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ContextManager

import numpy as np

from gateway.bench.capture import G711
from gateway.bench.server import REPO, BenchError, TalkoverServer, free_port
from gateway.config import MediaConfig, WebRtcConfig

SCENARIOS = REPO / "sipp_scenarios"
AUDIO = SCENARIOS / "audio"
MANIFEST = REPO / "tests" / "data" / "speech_manifest.json"
SIPP = "sipp"
SPEECH = f"{AUDIO / 'long_joe.ulaw'},-1,0"  # looping caller speech (rtp_file: loop, payload type 0)
LOAD_SOURCE_ALLOW = ["127.0.0.1/32"]  # SIPp runs on loopback: exempt from the flood limit, explicitly
RTP_RANGE = 400
STAT_PERIOD_S = 1


def progress(bench: str, text: str) -> None:
    print(f"bench {bench}: {text}", file=sys.stderr, flush=True)


def work_dir(keep: str, prefix: str) -> ContextManager[str]:
    """A temp dir removed afterwards, or `keep` (created; left with every capture, SIPp log and
    server log in it, for a closer look)."""
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        return contextlib.nullcontext(keep)
    return tempfile.TemporaryDirectory(prefix=prefix)


def keep_dir_problem(keep: str) -> str:
    if keep and Path(keep).exists() and any(Path(keep).iterdir()):
        return f"--workdir {keep} must be new or empty"
    return ""


def media_overrides(wanted: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The subset of `wanted` that MediaConfig knows (the media chain's settings change as
    it is developed: a variant names what it means and keeps what exists), and what was dropped."""
    known = set(MediaConfig.__dataclass_fields__)
    return {k: v for k, v in wanted.items() if k in known}, sorted(set(wanted) - known)


# -- the server ---------------------------------------------------------------------------------


class BenchServer(TalkoverServer):
    """`talkover serve` for a bench: one dialplan entry for every number, media overrides,
    the flood limit with an explicit allow-list."""

    def __init__(
        self,
        work: Path,
        calls: int,
        entry: dict[str, Any],
        media: dict[str, Any] | None = None,
        flood_allow: list[str] | None = None,
    ) -> None:
        self.entry = {"name": "bench", "numbers": ["*"], **entry}
        self.media = dict(media or {})
        self.flood_allow = list(LOAD_SOURCE_ALLOW if flood_allow is None else flood_allow)
        self.rtp_port = random.randrange(20000, 60000 - RTP_RANGE, 2)
        super().__init__(work, calls)

    def _write(self, calls: int) -> None:
        tables: dict[str, dict[str, Any]] = {
            "sip": {"port": self.sip_port, "rtp_port": self.rtp_port, "rtp_port_range": RTP_RANGE,
                    "max_calls": max(calls, 4)},
            "sip.flood": {"allow": self.flood_allow},
            "http": {"port": self.http_port},
            "engine": {"socket": str(self.work / "engine.sock"), "slots": max(calls, 4) + 4},
            "media": self.media,
            "supervisor": {"drain_s": 5.0, "runtime_dir": str(self.work / "run"), "restart_backoff_s": 0.5},
            "log": {"format": "json", "level": "info"},
        }  # fmt: skip
        if "enabled" in WebRtcConfig.__dataclass_fields__:
            tables["webrtc"] = {"enabled": False}  # SIP only: no browser worker beside the one measured
        self.write_files(tables, self.entry)

    def capture_filter(self) -> str:
        """BPF for this server's SIP and RTP/RTCP only (other processes use loopback too)."""
        return f"udp and (port {self.sip_port} or portrange {self.rtp_port}-{self.rtp_port + RTP_RANGE + 1})"

    def turn_notes(self, start: int = 0) -> dict[str, list[str]]:
        """The engine's turn notes per call_id ("barge-in pause", "barge-in commit", ...)."""
        notes: dict[str, list[str]] = {}
        for rec in self.log_records("turn", start):
            notes.setdefault(str(rec.get("call_id", "")), []).append(str(rec.get("what", "")))
        return notes

    def ended_calls(self, start: int = 0) -> dict[str, dict[str, Any]]:
        """The worker's "call ended" summaries (underruns, barge-in pauses, ...) per call_id."""
        return {str(r.get("call_id", "")): r for r in self.log_records("call ended", start)}

    def metric(self, name: str, labels: str = "") -> float:
        """A counter/gauge from /metrics, summed over its label sets (those containing
        `labels`, e.g. 'outcome="rejected"', if given)."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:
            return 0.0
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{") and labels in line:
                total += float(line.rsplit(None, 1)[-1])
        return total


# -- SIPp ---------------------------------------------------------------------------------------


@dataclass
class SippStats:
    created: int = 0
    current: int = 0
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    elapsed_s: float = 0.0


def sipp_rate(rate_per_s: float) -> tuple[int, int]:
    """SIPp's -r (calls per -rp period) and -rp (ms) for a rate in calls per second: 0.7/s is
    -r 7 -rp 10000."""
    for period_ms in (1000, 10_000, 100_000):
        r = rate_per_s * period_ms / 1000
        if r >= 1 and abs(r - round(r)) < 1e-6:
            return round(r), period_ms
    return max(1, round(rate_per_s * 100)), 100_000


class SippRun:
    """One SIPp process: a scenario, its -key/-set values, -m/-l/-r, with -trace_stat (a CSV
    line every STAT_PERIOD_S) and -trace_rtt (every rtd="true" response time) in `work`
    unless `traces` is off."""

    def __init__(
        self,
        work: Path,
        scenario: str,
        target: str,
        *,
        calls: int,
        limit: int,
        rate_per_s: float,
        keys: dict[str, str] | None = None,
        sets: dict[str, str | int] | None = None,
        extra: tuple[str, ...] = (),
        timeout_s: float = 120.0,
        source_ip: str = "127.0.0.1",
        service: str = "1000",
        traces: bool = True,
    ) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        self.stat_path, self.err_path = work / "stat.csv", work / "errors.log"
        self.out_path = work / "sipp.out"
        self.timeout_s = timeout_s
        self.calls = calls
        rate, period_ms = sipp_rate(rate_per_s)
        self.argv = [
            SIPP, "-sf", str(SCENARIOS / scenario), "-i", source_ip, "-p", str(free_port()),
            "-mi", source_ip, "-mp", str(free_port()), "-s", service,
            "-m", str(calls), "-l", str(limit), "-r", str(rate), "-rp", str(period_ms),
            "-timeout", f"{int(timeout_s)}s", "-timeout_error", "-nostdin",
            "-trace_err", "-error_file", str(self.err_path),
        ]  # fmt: skip
        if traces:
            self.argv += ["-trace_stat", "-stf", str(self.stat_path), "-fd", str(STAT_PERIOD_S),
                          "-trace_rtt", "-rtt_freq", "1"]  # fmt: skip
        for k, v in (keys or {}).items():
            self.argv += ["-key", k, v]
        for k, v in (sets or {}).items():
            self.argv += ["-set", k, str(v)]
        self.argv += [*extra, target]
        self.proc: subprocess.Popen[bytes] | None = None
        self.returncode: int | None = None

    def start(self) -> "SippRun":
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(
                self.argv, cwd=self.work, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        return self

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait(self, on_tick: Callable[[SippStats], None] | None = None, every_s: float = 2.0) -> int:
        """Until SIPp exits (its own -timeout bounds it; ours is 15 s beyond), calling
        `on_tick(stats)` every `every_s` for progress and side checks."""
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout_s + 15
        next_tick = time.monotonic() + every_s
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                break
            if on_tick is not None and time.monotonic() >= next_tick:
                next_tick += every_s
                on_tick(self.stats())
            try:
                self.proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        self.returncode = self.proc.returncode if self.proc.returncode is not None else -1
        return self.returncode

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def stats(self) -> SippStats:
        """The latest -trace_stat line (cumulative counters)."""
        try:
            lines = self.stat_path.read_text(errors="replace").splitlines()
        except OSError:
            return SippStats()
        if len(lines) < 2:
            return SippStats()
        head, last = lines[0].split(";"), lines[-1].split(";")
        row = dict(zip(head, last))

        def num(key: str) -> int:
            try:
                return int(float(row.get(key, "0") or 0))
            except ValueError:
                return 0

        elapsed = row.get("ElapsedTime(C)", "0:0:0")
        try:
            h, m, s = elapsed.split(":")[:3]
            secs = int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            secs = 0.0
        return SippStats(num("TotalCallCreated"), num("CurrentCall"), num("SuccessfulCall(C)"),
                         num("FailedCall(C)"), num("Retransmissions(C)"), secs)  # fmt: skip

    def response_times_ms(self) -> list[float]:
        """INVITE → 200 times (rtd="true"), one per answered call, from -trace_rtt."""
        out: list[float] = []
        for path in sorted(self.work.glob("*_rtt.csv")):
            for line in path.read_text(errors="replace").splitlines()[1:]:
                parts = line.split(";")
                if len(parts) >= 2:
                    try:
                        out.append(float(parts[1]))
                    except ValueError:
                        continue
        return out

    def report(self, chars: int = 1500) -> str:
        out = ""
        for path in (self.out_path, self.err_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                out += f"\n--- {path.name}\n{text[-chars:]}"
        return out


def speech_calls(
    work: Path, target: str, service: str, *, calls: int, limit: int, rate_per_s: float, talk_s: float,
    timeout_s: float, traces: bool = True, rtp_file: str = SPEECH,
) -> SippRun:
    """uac_call.xml to `service`: `calls` callers (`limit` at once, `rate_per_s`), each
    streaming `rtp_file` (default: looping G.711 speech) for `talk_s`."""
    return SippRun(work, "uac_call.xml", target, calls=calls, limit=limit, rate_per_s=rate_per_s,
                   keys={"rtp_file": rtp_file}, sets={"talk_ms": int(talk_s * 1000)}, timeout_s=timeout_s,
                   service=service, traces=traces)  # fmt: skip


def rate_calls(work: Path, target: str, service: str, rate_per_s: float, rate_s: float, call_s: float,
               rtp_file: str = SPEECH) -> SippRun:
    """A rate step: `call_s` calls placed at `rate_per_s` for `rate_s`."""
    limit = max(8, math.ceil(rate_per_s * (call_s + 3) * 3))  # SIPp must not be what holds calls back
    return speech_calls(work, target, service, calls=max(1, math.ceil(rate_per_s * rate_s)), limit=limit,
                        rate_per_s=rate_per_s, talk_s=call_s, timeout_s=rate_s + call_s + 40,
                        rtp_file=rtp_file)  # fmt: skip


# -- caller audio -------------------------------------------------------------------------------


def manifest_clip(name: str) -> dict[str, Any]:
    clips = json.loads(MANIFEST.read_text())["clips"]
    if name not in clips:
        raise BenchError(f"{name!r} is not in {MANIFEST}")
    return dict(clips[name])


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 → G.711 µ-law by nearest code (the decode table inverted; 8 kHz in, 1 byte a sample)."""
    table = G711[0].astype(np.int32)
    order = np.argsort(table, kind="stable")
    levels = table[order]
    x = pcm.astype(np.int32)
    i = np.clip(np.searchsorted(levels, x), 1, len(levels) - 1)
    nearer = np.where(np.abs(levels[i - 1] - x) <= np.abs(levels[i] - x), i - 1, i)
    return bytes(order[nearer].astype(np.uint8))


def write_turns_ulaw(path: Path, turn_s: float = 3.0, gap_s: float = 4.0, noise_dbfs: float = -65.0) -> Path:
    """A caller who takes turns: long_joe.ulaw cut into `turn_s` pieces, each followed by
    `gap_s` of line noise (in which the echo agent plays the turn back). The looping file's
    constant speech is continuous double talk; this is closer to a conversation."""
    speech = (AUDIO / "long_joe.ulaw").read_bytes()
    turn, gap = int(turn_s * 8000), int(gap_s * 50) * 160
    pause = ulaw_encode(line_noise(gap, noise_dbfs, seed=11))
    pieces = [speech[i : i + turn] for i in range(0, len(speech), turn) if len(speech) - i >= 8000]
    path.write_bytes(b"".join(piece + pause for piece in pieces))
    return path


def write_noise_ulaw(path: Path, seconds: float, level_dbfs: float, seed: int = 7) -> Path:
    """Headless µ-law white noise at `level_dbfs` RMS (a caller who says nothing on a noisy
    line); level -120 or below writes digital silence."""
    path.write_bytes(ulaw_encode(line_noise(int(seconds * 50) * 160, level_dbfs, seed)))
    return path


def line_noise(samples: int, level_dbfs: float, seed: int) -> np.ndarray:
    """White noise at `level_dbfs` RMS as int16; -120 or below: digital silence."""
    if level_dbfs <= -120:
        return np.zeros(samples, dtype=np.int16)
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal(samples) * 32768 * 10 ** (level_dbfs / 20), -32768, 32767).astype(np.int16)


