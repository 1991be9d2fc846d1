"""`talkover bench calls`: what N concurrent calls cost the real gateway, audio both ways.

For each N in --calls, a fresh `talkover serve` (its own temp config, free ports, JSON
logs, the echo agent with the chime greeting for every number) is started and measured:

  idle      CPU of the worker and engine processes for a few seconds with no call
  N calls   SIPp's uac_call.xml places N concurrent calls (-l N -m N), each streaming
            looping G.711 speech (long_joe.ulaw) for --seconds; the echo agent plays
            every caller turn back, so audio flows both ways. Once /calls shows N
            confirmed calls, CPU is sampled over the steady window (after a short settle,
            ending before the first BYE) and /calls is read at its end: tick gaps of the
            media clock, playout underruns, frames in/out.

SIPp must exit 0 (every call answered, BYE answered) and the server must exit 0 on
SIGTERM. CPU comes from /proc/<pid>/stat (utime + stime, in clock ticks): "% of a core"
is CPU seconds per wall second x 100. Per call = (total - idle) / N.

The table goes to stdout, progress to stderr; a PNG (CPU per call vs N) goes to
artifacts/bench_calls.png when matplotlib is importable.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
SCENARIO = REPO / "sipp_scenarios" / "uac_call.xml"
SPEECH = REPO / "sipp_scenarios" / "audio" / "long_joe.ulaw"
SIPP = "sipp"
SIP_WORKER = "w0"  # the supervisor's pjsua2 worker
DEFAULT_CALLS = (1, 2, 4)
DEFAULT_SECONDS = 20.0
DEFAULT_PLOT = REPO / "artifacts" / "bench_calls.png"

START_TIMEOUT_S = 30.0  # /healthz 200 after `talkover serve`
CONFIRM_TIMEOUT_S = 15.0  # SIPp started → N confirmed calls in /calls
SIPP_GRACE_S = 30.0  # SIPp's own -timeout beyond talk_ms, and our wait beyond that
STOP_TIMEOUT_S = 30.0  # SIGTERM → exit (drain_s is 5 s and no call should be live)
HTTP_TIMEOUT_S = 5.0
POLL_S = 0.1
IDLE_S, QUICK_IDLE_S = 3.0, 1.0  # idle CPU sample
SETTLE_S, QUICK_SETTLE_S = 1.0, 0.25  # after all calls confirmed, before the window
END_MARGIN_S, QUICK_END_MARGIN_S = 1.0, 0.25  # the window ends this long before the first BYE
# (the first BYE's time is a lower bound: SIPp's start, or the oldest call's offer, + talk_ms)
MIN_WINDOW_S, QUICK_MIN_WINDOW_S = 1.0, 0.3  # shorter steady windows are refused
STATUS_PERIOD_S = 1.0  # the worker reports /calls once a second
LOG_SAMPLES = 5  # distinct warning/error events kept per run

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


@dataclass
class CpuSample:
    worker_pct: float  # % of one core
    engine_pct: float
    seconds: float


@dataclass
class CallsResult:
    calls: int
    idle: CpuSample | None = None
    busy: CpuSample | None = None
    tick_p50_ms: float = 0.0  # worst call's
    tick_p99_ms: float = 0.0
    tick_max_ms: float = 0.0
    underruns: int = 0  # sum over calls
    frames_in: float = 0.0  # per call, at the end of the window
    frames_out: float = 0.0
    age_s: float = 0.0  # mean call age when /calls was read
    jitter: list[dict[str, Any]] = field(default_factory=list)
    sipp_rc: int | None = None
    server_rc: int | None = None
    warnings: int = 0  # server log events at warning level / error level or above, before SIGTERM
    errors: int = 0
    log_samples: list[str] = field(default_factory=list)
    stop_warnings: int = 0  # the same, logged after SIGTERM
    stop_errors: int = 0
    child_exits: dict[str, int] = field(default_factory=dict)  # engine / worker exit codes on SIGTERM
    problems: list[str] = field(default_factory=list)  # why this run does not count
    error: str = ""  # the run failed before it had figures

    @property
    def ok(self) -> bool:
        return not self.error and not self.problems and self.sipp_rc == 0 and self.server_rc == 0

    def _per_call(self, busy: float, idle: float) -> float:
        return (busy - idle) / self.calls if self.calls else 0.0

    @property
    def worker_per_call(self) -> float:
        assert self.busy is not None and self.idle is not None
        return self._per_call(self.busy.worker_pct, self.idle.worker_pct)

    @property
    def engine_per_call(self) -> float:
        assert self.busy is not None and self.idle is not None
        return self._per_call(self.busy.engine_pct, self.idle.engine_pct)


# -- helpers ---------------------------------------------------------------------------------


def _progress(text: str) -> None:
    print(f"bench calls: {text}", file=sys.stderr, flush=True)


def _free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (SIP listens on both)."""
    other = socket.SOCK_STREAM if kind == socket.SOCK_DGRAM else socket.SOCK_DGRAM
    for _ in range(50):
        with socket.socket(socket.AF_INET, kind) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        try:
            with socket.socket(socket.AF_INET, other) as s:
                s.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
    raise BenchError("no free port")


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _wait_until(pred: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def _cpu_ticks(pid: int) -> int:
    """utime + stime of `pid` (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError as exc:
        raise BenchError(f"process {pid} is gone") from exc
    return int(fields[11]) + int(fields[12])


def _children(ppid: int) -> list[tuple[int, str]]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == ppid:
            out.append((int(entry), cmd))
    return out


# -- the server under test ---------------------------------------------------------------------


class _Server:
    """`python -m gateway.cli serve` with a config of its own in `work`."""

    def __init__(self, work: Path, calls: int) -> None:
        self.work = work
        self.sip_port = _free_port()
        self.http_port = _free_port(socket.SOCK_STREAM)
        self.log_path = work / "talkover.log"
        self.config_path = work / "talkover.toml"
        self.dialplan_path = work / "dialplan.toml"
        self.proc: subprocess.Popen[bytes] | None = None
        self._write(calls)

    def _write(self, calls: int) -> None:
        tables: dict[str, dict[str, Any]] = {
            "sip": {"port": self.sip_port, "rtp_port": random.randrange(20000, 60000, 2), "rtp_port_range": 200,
                    "max_calls": max(calls, 4)},
            "http": {"port": self.http_port},
            "engine": {"socket": str(self.work / "engine.sock"), "slots": max(calls, 4)},
            "supervisor": {"drain_s": 5.0, "runtime_dir": str(self.work / "run"), "restart_backoff_s": 0.5},
            "log": {"format": "json", "level": "info"},
        }  # fmt: skip
        lines = [f"dialplan = {_toml(str(self.dialplan_path))}"]
        for name, table in tables.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml(v)}" for k, v in table.items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        # Not interruptible: the looping caller never pauses for long, and with barge-in on it
        # cuts every echo reply off after ~0.4 s; this way the replies play, audio both ways.
        entry = {"name": "bench", "numbers": ["*"], "agent": "echo", "greeting": "chime", "interruptible": False}
        self.dialplan_path.write_text("[[entry]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in entry.items()))

    @property
    def sip_host(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def sip_worker(self, health: dict[str, Any]) -> dict[str, Any]:
        """The SIP worker's entry in /healthz (other workers, e.g. WebRTC, may be listed too)."""
        workers = list(health.get("workers", []))
        named = [w for w in workers if w.get("name") == SIP_WORKER]
        return named[0] if named else (workers[0] if workers else {})

    def start(self) -> dict[str, Any]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
            )  # fmt: skip

        def healthy() -> dict[str, Any] | bool:
            self.check_alive()
            code, body = self.get_json("/healthz")
            return body if code == 200 and self.sip_worker(body).get("pid") else False

        health: dict[str, Any] = _wait_until(healthy, START_TIMEOUT_S, "/healthz 200")
        return health

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"talkover serve exited {self.proc.returncode}:\n{self.log_tail()}")

    def get_json(self, path: str) -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=HTTP_TIMEOUT_S) as r:
                return r.status, json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                return e.code, json.loads(e.read() or b"{}")
            except ValueError:
                return e.code, {}
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
            return 0, {}

    def calls(self) -> list[dict[str, Any]]:
        """The SIP worker's calls in /calls."""
        code, body = self.get_json("/calls")
        calls = list(body.get("calls", [])) if code == 200 else []
        return [c for c in calls if c.get("worker", SIP_WORKER) == SIP_WORKER]

    def engine_pid(self) -> int:
        assert self.proc is not None
        found = [pid for pid, cmd in _children(self.proc.pid) if "engine.server" in cmd]
        if not found:
            raise BenchError("no engine.server child of the supervisor")
        return found[0]

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            _progress(f"talkover serve did not exit {STOP_TIMEOUT_S:.0f} s after SIGTERM: killing it")
            self.kill()
            return -9

    def kill(self) -> None:
        """Last resort, also for the children (the supervisor is the only one who knows them)."""
        if self.proc is None:
            return
        kids = [pid for pid, _ in _children(self.proc.pid)]
        for pid in [self.proc.pid, *kids]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def child_exits(self, start: int = 0) -> dict[str, int]:
        """The supervisor's "child stopped" exit codes logged after byte offset `start`."""
        out: dict[str, int] = {}
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            if '"child stopped"' not in line:
                continue
            try:
                rec = json.loads(line)
                out[str(rec["child"])] = int(rec["exit_code"])
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def log_problems(self, start: int = 0, end: int | None = None) -> tuple[int, int, list[str]]:
        """(warnings, errors, a few distinct samples) in the server log between two byte
        offsets; non-JSON lines (tracebacks on stderr) count as errors when they look like one."""
        warnings = errors = 0
        samples: list[str] = []
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                text = f.read(-1 if end is None else max(0, end - start)).decode(errors="replace")
        except OSError:
            return 0, 0, []
        for line in text.splitlines():
            rec: dict[str, Any] | None = None
            if line.startswith("{"):
                try:
                    rec = json.loads(line)
                except ValueError:
                    rec = None
            if rec is not None:
                level = str(rec.get("level", "")).lower()
                if level not in ("warning", "error", "critical", "exception"):
                    continue
                key = f"{level}: {rec.get('process', '?')}: {rec.get('event', '')}"
                extra = {k: v for k, v in rec.items() if k not in ("level", "event", "timestamp", "process", "call_id")}
                sample = f"{key} {json.dumps(extra)[:200]}"
            elif any(word in line for word in ("Traceback", "Error", "Assertion", "Segmentation", "core dumped")):
                level, key, sample = "error", f"error: {line[:120]}", f"stderr: {line[:200]}"
            else:
                continue
            if level == "warning":
                warnings += 1
            else:
                errors += 1
            if len(samples) < LOG_SAMPLES and not any(s.startswith(key) for s in samples):
                samples.append(sample)
        return warnings, errors, samples


# -- SIPp ----------------------------------------------------------------------------------------


class _Sipp:
    def __init__(self, work: Path, target: str, calls: int, seconds: float) -> None:
        self.work = work
        self.out_path = work / "sipp.out"
        self.err_path = work / "sipp_errors.log"
        self.timeout_s = seconds + SIPP_GRACE_S
        self.argv = [
            SIPP, "-sf", str(SCENARIO), "-i", "127.0.0.1", "-p", str(_free_port()),
            "-mi", "127.0.0.1", "-mp", str(_free_port()), "-s", "1000",
            "-key", "rtp_file", f"{SPEECH},-1,0", "-set", "talk_ms", str(int(seconds * 1000)),
            "-m", str(calls), "-l", str(calls), "-r", "100", "-rp", "1000",
            "-timeout", f"{int(self.timeout_s)}s", "-timeout_error", "-nostdin",
            "-trace_err", "-error_file", str(self.err_path), target,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(self.argv, cwd=self.work, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)  # fmt: skip

    def poll(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait(self) -> int:
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=self.timeout_s + 15)
        except subprocess.TimeoutExpired:
            self.kill()
            return -1

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)

    def report(self) -> str:
        """The end of SIPp's screen and its error log, for a failure message."""
        out = ""
        for path in (self.out_path, self.err_path):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            out += f"\n--- {path.name}\n{text[-2000:]}"
        return out


# -- one N ---------------------------------------------------------------------------------------


def _sample_cpu(pids: tuple[int, int], seconds: float, check: Callable[[], None]) -> CpuSample:
    """CPU of (worker, engine) over `seconds`, checking `check` every POLL_S meanwhile."""
    t0, w0, e0 = time.monotonic(), _cpu_ticks(pids[0]), _cpu_ticks(pids[1])
    end = t0 + seconds
    while (now := time.monotonic()) < end:
        check()
        time.sleep(min(POLL_S, end - now))
    return _cpu_since(pids, t0, w0, e0)


def _cpu_since(pids: tuple[int, int], t0: float, w0: int, e0: int) -> CpuSample:
    w1, e1, t1 = _cpu_ticks(pids[0]), _cpu_ticks(pids[1]), time.monotonic()
    wall = t1 - t0
    pct = 100.0 / _CLK_TCK / wall
    return CpuSample((w1 - w0) * pct, (e1 - e0) * pct, wall)


def _confirmed(server: _Server, n: int) -> list[dict[str, Any]]:
    calls = server.calls()
    live = [c for c in calls if c.get("phase") == "confirmed"]
    return live if len(live) >= n else []


def _first_bye(server: _Server, calls: list[dict[str, Any]], started: float, seconds: float) -> float:
    """A lower bound on when SIPp sends its first BYE (monotonic): the oldest call's offer
    (its age in /calls) + talk_ms, and never before SIPp's start + talk_ms. /calls is
    rewritten once a second, so this waits (bounded) for a fresh one to pin the age down."""
    stale_s, seen = STATUS_PERIOD_S, {c.get("call_id"): c.get("age_s") for c in calls}
    deadline = time.monotonic() + STATUS_PERIOD_S + 0.5
    while time.monotonic() < deadline:
        fresh = server.calls()
        if any(c.get("call_id") in seen and c.get("age_s") != seen[c.get("call_id")] for c in fresh):
            calls, stale_s = fresh, POLL_S  # written since the previous read, at most POLL_S ago
            break
        time.sleep(POLL_S / 2)
    now = time.monotonic()
    oldest_age = max(float(c.get("age_s", 0.0)) for c in calls) + stale_s
    return max(now - oldest_age, started) + seconds


def _measure_one(n: int, seconds: float, quick: bool, tmp: Path) -> CallsResult:
    res = CallsResult(n)
    work = tmp / f"n{n}"
    work.mkdir()
    server = _Server(work, n)
    sipp: _Sipp | None = None
    try:
        health = server.start()
        worker = server.sip_worker(health)
        wpid, epid = int(worker["pid"]), server.engine_pid()
        if worker.get("max_calls") is not None and int(worker["max_calls"]) < n:
            raise BenchError(f"the worker takes {worker['max_calls']} calls at most (pjsua's cap); cannot bench {n}")
        _progress(f"N={n}: server up (sip {server.sip_host}, worker pid {wpid}, engine pid {epid}); idle CPU...")
        res.idle = _sample_cpu((wpid, epid), QUICK_IDLE_S if quick else IDLE_S, server.check_alive)
        _progress(f"N={n}: idle worker {res.idle.worker_pct:.1f} %, engine {res.idle.engine_pct:.1f} %")

        sipp = _Sipp(work, server.sip_host, n, seconds)
        sipp.start()
        started = time.monotonic()

        def all_confirmed() -> list[dict[str, Any]]:
            server.check_alive()
            if sipp is not None and sipp.poll() is not None:
                raise BenchError(f"SIPp exited {sipp.poll()} before {n} calls were confirmed{sipp.report()}")
            return _confirmed(server, n)

        calls = _wait_until(all_confirmed, CONFIRM_TIMEOUT_S, f"{n} confirmed calls in /calls")
        settle_end = time.monotonic() + (QUICK_SETTLE_S if quick else SETTLE_S)
        _progress(f"N={n}: {n} calls confirmed {time.monotonic() - started:.1f} s after SIPp started")
        first_bye = _first_bye(server, calls, started, seconds)
        time.sleep(max(0.0, settle_end - time.monotonic()))
        window = first_bye - (QUICK_END_MARGIN_S if quick else END_MARGIN_S) - time.monotonic()
        if window < (QUICK_MIN_WINDOW_S if quick else MIN_WINDOW_S):
            raise BenchError(f"--seconds {seconds:g} leaves a steady window of {window:.1f} s; use more")

        def still_up() -> None:
            server.check_alive()
            if sipp is not None and sipp.poll() is not None:
                raise BenchError(f"SIPp exited {sipp.poll()} during the steady window{sipp.report()}")

        res.busy = _sample_cpu((wpid, epid), window, still_up)
        calls = server.calls()
        _take_calls(res, calls)
        _progress(
            f"N={n}: {res.busy.seconds:.1f} s window: worker {res.busy.worker_pct:.1f} %, engine "
            f"{res.busy.engine_pct:.1f} %; {len(calls)} calls, tick gap worst p99 {res.tick_p99_ms:.0f} ms "
            f"max {res.tick_max_ms:.0f} ms, underruns {res.underruns}"
        )
        for c in calls:
            j = c.get("jitter") or {}
            _progress(
                f"N={n}:   call {str(c.get('call_id', ''))[:12]} {c.get('codec', '')} in {c.get('frames_in')} "
                f"out {c.get('frames_out')} underruns {c.get('underruns')} tick {c.get('tick_gap')} "
                f"rx_lost {j.get('rx_lost')} jb lost/discard/empty {j.get('jb_lost')}/{j.get('jb_discard')}/"
                f"{j.get('jb_empty')} jitter {j.get('rx_jitter_mean_us')} µs"
            )
        if len(calls) != n:
            res.problems.append(f"/calls listed {len(calls)} calls at the end of the window, not {n}")

        res.sipp_rc = sipp.wait()
        if res.sipp_rc != 0:
            res.problems.append(f"SIPp exited {res.sipp_rc}")
            _progress(f"N={n}: SIPp exited {res.sipp_rc}{sipp.report()}")
        health_after = server.get_json("/healthz")[1]
        w = server.sip_worker(health_after)
        if w.get("restarts") or (w.get("pid") and int(w["pid"]) != wpid):
            res.problems.append(f"the SIP worker {w.get('name')} restarted during the run")
        if health_after.get("engine", {}).get("restarts"):
            res.problems.append("the engine restarted during the run")
    except BenchError as exc:
        res.error = str(exc)
        _progress(f"N={n}: FAILED: {exc}")
    finally:
        if sipp is not None:
            sipp.kill()
        stop_at = server.log_size()
        res.server_rc = server.stop()
        if res.server_rc != 0:
            res.problems.append(f"talkover serve exited {res.server_rc} on SIGTERM")
            _progress(f"N={n}: talkover serve exited {res.server_rc}:\n{server.log_tail()}")
        res.warnings, res.errors, res.log_samples = server.log_problems(0, stop_at)
        if res.warnings or res.errors:
            _progress(f"N={n}: server log before SIGTERM: {res.warnings} warnings, {res.errors} errors")
            for s in res.log_samples:
                _progress(f"N={n}:   {s}")
        res.child_exits = server.child_exits(stop_at)
        bad = {k: v for k, v in res.child_exits.items() if v != 0}
        if bad:
            _progress(
                f"N={n}: children exited non-zero on SIGTERM (the supervisor still exited {res.server_rc}): {bad}"
            )
        res.stop_warnings, res.stop_errors, samples = server.log_problems(stop_at)
        if res.stop_warnings or res.stop_errors:
            _progress(f"N={n}: server log during shutdown: {res.stop_warnings} warnings, {res.stop_errors} errors")
            for s in samples:
                _progress(f"N={n}:   {s}")
    return res


def _take_calls(res: CallsResult, calls: list[dict[str, Any]]) -> None:
    if not calls:
        return
    gaps = [c.get("tick_gap") or {} for c in calls]
    res.tick_p50_ms = max(float(g.get("p50_ms", 0.0)) for g in gaps)
    res.tick_p99_ms = max(float(g.get("p99_ms", 0.0)) for g in gaps)
    res.tick_max_ms = max(float(g.get("max_ms", 0.0)) for g in gaps)
    res.underruns = sum(int(c.get("underruns", 0)) for c in calls)
    res.frames_in = statistics.fmean(int(c.get("frames_in", 0)) for c in calls)
    res.frames_out = statistics.fmean(int(c.get("frames_out", 0)) for c in calls)
    res.age_s = statistics.fmean(float(c.get("age_s", 0.0)) for c in calls)
    res.jitter = [c.get("jitter") or {} for c in calls]


def measure(calls: list[int], seconds: float, quick: bool = False) -> list[CallsResult]:
    """One fresh server per N; a failed N is reported in its result, the others still run."""
    results = []
    with tempfile.TemporaryDirectory(prefix="talkover-bench-calls-") as tmp:
        for n in calls:
            _progress(f"N={n}: starting talkover serve ({seconds:g} s calls, {os.cpu_count()} CPUs)")
            results.append(_measure_one(n, seconds, quick, Path(tmp)))
    return results


# -- report ----------------------------------------------------------------------------------------

_COLUMNS = (
    ("calls", 5), ("worker %", 8), ("w -idle", 7), ("w /call", 7), ("engine %", 8), ("e -idle", 7),
    ("e /call", 7), ("tick p50/p99/max ms", 19), ("underruns", 9), ("frames in/out /call", 19), ("log w/e", 7),
    ("sipp", 4), ("stop", 6),
)  # fmt: skip


def _row(cells: tuple[str, ...]) -> str:
    return "  ".join(f"{c:>{w}}" for c, (_, w) in zip(cells, _COLUMNS, strict=True))


def format_table(results: list[CallsResult]) -> str:
    head = _row(tuple(name for name, _ in _COLUMNS))
    lines = [head, "-" * len(head)]
    idles = [r.idle for r in results if r.idle is not None]
    if idles:
        w = statistics.fmean(i.worker_pct for i in idles)
        e = statistics.fmean(i.engine_pct for i in idles)
        lines.append(_row(("0", f"{w:.1f}", "-", "-", f"{e:.1f}", "-", "-", "-", "-", "-", "-", "-", "-")))
    for r in results:
        if r.busy is None or r.idle is None:
            lines.append(_row((str(r.calls), *["-"] * 10, "FAIL", _stop_cell(r))) + f"  {r.error[:80]}")
            continue
        b, i = r.busy, r.idle
        cells = (
            str(r.calls), f"{b.worker_pct:.1f}", f"{b.worker_pct - i.worker_pct:.1f}", f"{r.worker_per_call:.1f}",
            f"{b.engine_pct:.1f}", f"{b.engine_pct - i.engine_pct:.1f}", f"{r.engine_per_call:.1f}",
            f"{r.tick_p50_ms:.0f}/{r.tick_p99_ms:.0f}/{r.tick_max_ms:.1f}", str(r.underruns),
            f"{r.frames_in:.0f}/{r.frames_out:.0f}", f"{r.warnings}/{r.errors}",
            "ok" if r.sipp_rc == 0 else str(r.sipp_rc), _stop_cell(r),
        )  # fmt: skip
        lines.append(_row(cells))
    lines.append("")
    lines.append(
        "CPU in % of one core from /proc/<pid>/stat over the steady window; -idle: minus the same "
        "server's idle figure (row 0 is the mean idle); /call: (total - idle) / N. tick: the media "
        "clock's gap between 20 ms ticks, worst call; underruns: summed over calls; frames: per call "
        f"since it started (~{_mean_age(results):.0f} s old when read); log w/e: warnings/errors in the "
        "server log before SIGTERM; stop: the server's exit code on SIGTERM, and any child (engine, "
        "w0) that exited non-zero during that shutdown."
    )
    return "\n".join(lines)


def _stop_cell(r: CallsResult) -> str:
    bad = [f"{k}={v}" for k, v in r.child_exits.items() if v != 0]
    head = "ok" if r.server_rc == 0 else str(r.server_rc)
    return ",".join([head, *bad]) if bad else head


def _mean_age(results: list[CallsResult]) -> float:
    ages = [r.age_s for r in results if r.age_s]
    return statistics.fmean(ages) if ages else 0.0


def plot(results: list[CallsResult], path: Path) -> str:
    """Writes the PNG; returns what happened, for the report."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install matplotlib)"
    rows = [r for r in results if r.busy is not None and r.idle is not None]
    if not rows:
        return "plot skipped: no run produced figures"
    ns = [r.calls for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(ns, [r.worker_per_call for r in rows], marker="o", label="worker (pjsua2 + media chain)")
    ax.plot(ns, [r.engine_per_call for r in rows], marker="s", label="engine (echo agent)")
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("concurrent calls N")
    ax.set_ylabel("CPU per call, % of one core (minus idle)")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"talkover bench calls ({os.cpu_count()} CPUs, G.711 both ways)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return f"plot written to {path}"


def run(
    calls: list[int],
    seconds: float,
    quick: bool = False,
    *,
    plot_path: Path | None = DEFAULT_PLOT,
    results: list[CallsResult] | None = None,
) -> int:
    """`talkover bench calls --calls 1,2,4 --seconds 20`: measure, print the table, plot.

    Returns 0 when every N ran with SIPp and the server exiting 0, else 1 (2 for bad
    arguments). `results`, if given, receives the figures (for tests)."""
    if not calls or any(n < 1 for n in calls):
        print("talkover: --calls must list positive numbers, e.g. 1,2,4", file=sys.stderr)
        return 2
    if seconds <= 0:
        print("talkover: --seconds must be positive", file=sys.stderr)
        return 2
    from shutil import which

    if which(SIPP) is None:
        print(f"talkover: bench calls needs SIPp ({SIPP}) on PATH", file=sys.stderr)
        return 2
    got = measure(list(calls), seconds, quick)
    if results is not None:
        results.extend(got)
    print(format_table(got), flush=True)
    if plot_path is not None:
        _progress(plot(got, plot_path))
    failed = [r for r in got if not r.ok]
    for r in failed:
        _progress(f"N={r.calls} failed: {r.error or '; '.join(r.problems)}")
    return 1 if failed else 0


def parse_calls(text: str) -> list[int]:
    """`--calls 1,2,4` → [1, 2, 4] (for argparse's type=)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise ValueError(f"--calls wants comma-separated numbers, got {text!r}") from exc


def from_args(args: Any) -> int:
    """What `talkover bench calls` runs: args.calls is the --calls text, args.seconds a float."""
    try:
        calls = parse_calls(str(args.calls))
    except ValueError as exc:
        print(f"talkover: {exc}", file=sys.stderr)
        return 2
    return run(calls, float(args.seconds))
