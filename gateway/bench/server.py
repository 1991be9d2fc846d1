"""The gateway under test for the SIPp benchmarks: `talkover serve` with a config of its own
(free ports, JSON logs, a dialplan entry for every number), reached over HTTP, its log read
for warnings, errors and the supervisor's child exits; and what a bench needs around it:
free ports, TOML values, polling with a deadline, CPU ticks of a process and its children.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[2]
SIP_WORKER = "w0"  # the supervisor's pjsua2 worker
START_TIMEOUT_S = 30.0  # /healthz 200 after `talkover serve`
STOP_TIMEOUT_S = 30.0  # SIGTERM → exit (drain_s is 5 s and no call should be live)
HTTP_TIMEOUT_S = 5.0
POLL_S = 0.1
LOG_SAMPLES = 5  # distinct warning/error events kept per run
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(RuntimeError):
    pass


def _progress(text: str) -> None:
    print(f"bench calls: {text}", file=sys.stderr, flush=True)


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
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


def free_port_run(n: int, below: int = 50000) -> int:
    """The first of `n` consecutive ports free for UDP and TCP on 127.0.0.1, from 20000 up to
    `below` (a worker pool's SIP ports)."""
    for _ in range(100):
        base = random.randrange(20000, below)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                    socks.append(socket.socket(socket.AF_INET, kind))
                    socks[-1].bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise BenchError(f"no run of {n} free ports on 127.0.0.1")


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def wait_until(pred: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(POLL_S)


def cpu_ticks(pid: int) -> int:
    """utime + stime of `pid` (all its threads), in clock ticks."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError as exc:
        raise BenchError(f"process {pid} is gone") from exc
    return int(fields[11]) + int(fields[12])


def children(ppid: int) -> list[tuple[int, str]]:
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


class TalkoverServer:
    """`python -m gateway.cli serve` with a config of its own in `work`."""

    def __init__(self, work: Path, calls: int) -> None:
        self.work = work
        self.sip_port = free_port()
        self.http_port = free_port(socket.SOCK_STREAM)
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
        # Not interruptible: the looping caller never pauses for long, and with barge-in on it
        # cuts every echo reply off after ~0.4 s; this way the replies play, audio both ways.
        entry = {"name": "bench", "numbers": ["*"], "agent": "echo", "greeting": "chime", "interruptible": False}
        self.write_files(tables, entry)

    def write_files(self, tables: dict[str, dict[str, Any]], entry: dict[str, Any]) -> None:
        """The config (`tables`, each `[name]` with its keys) and a dialplan of one `entry`."""
        lines = [f"dialplan = {toml_value(str(self.dialplan_path))}"]
        for name, table in tables.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        body = "".join(f"{k} = {toml_value(v)}\n" for k, v in entry.items())
        self.dialplan_path.write_text("[[entry]]\n" + body)

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

        health: dict[str, Any] = wait_until(healthy, START_TIMEOUT_S, "/healthz 200")
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
        found = [pid for pid, cmd in children(self.proc.pid) if "engine.server" in cmd]
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
        kids = [pid for pid, _ in children(self.proc.pid)]
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

    def log_text(self, start: int = 0, end: int | None = None) -> str:
        """The server log between two byte offsets ("" if it cannot be read)."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                return f.read(-1 if end is None else max(0, end - start)).decode(errors="replace")
        except OSError:
            return ""

    def log_records(self, event: str, start: int = 0) -> list[dict[str, Any]]:
        """The JSON log records of `event` from byte offset `start`."""
        out = []
        for line in self.log_text(start).splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if rec.get("event") == event:
                    out.append(rec)
        return out

    def child_exits(self, start: int = 0) -> dict[str, int]:
        """The supervisor's "child stopped" exit codes logged after byte offset `start`."""
        out: dict[str, int] = {}
        for line in self.log_text(start).splitlines():
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
        for line in self.log_text(start, end).splitlines():
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

