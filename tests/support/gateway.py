"""Runs a real `talkover serve` for a test: its own ports, config, dialplan and logs."""

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gateway.bench.server import free_port, free_port_run, toml_value

REPO = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll a condition (a real state: a log line, an HTTP answer) until it holds or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# Tests that compare waveforms across a call run with the echo canceller and noise
# suppression off: AEC3/NS reshape the caller's audio (~5 ms delay, ~-2 dB, phase). The
# full chain has its own end-to-end tests (tests/test_media_chain_sip.py).
RAW_MEDIA = {"aec": False, "noise": "off"}

DEFAULT_ENTRY = {"name": "test", "numbers": ["*"], "agent": "echo", "greeting": "chime"}


@dataclass
class Gateway:
    workdir: Path
    sip: dict[str, Any] = field(default_factory=dict)
    engine: dict[str, Any] = field(default_factory=dict)
    media: dict[str, Any] = field(default_factory=dict)
    supervisor: dict[str, Any] = field(default_factory=dict)
    webrtc: dict[str, Any] = field(default_factory=dict)
    kamailio: dict[str, Any] = field(default_factory=dict)
    entries: list[dict[str, Any]] = field(default_factory=lambda: [dict(DEFAULT_ENTRY)])
    proc: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.sip_port = free_port()
        self.http_port = free_port(socket.SOCK_STREAM)
        self.rtp_port = random.randrange(20000, 60000, 2)
        self.record_dir = self.workdir / "recordings"
        self.log_path = self.workdir / "talkover.log"
        self.config_path = self.workdir / "talkover.toml"
        self.dialplan_path = self.workdir / "dialplan.toml"

    @property
    def uri_host(self) -> str:
        return f"127.0.0.1:{self.sip_port}"

    def uri(self, user: str = "1000") -> str:
        return f"sip:{user}@{self.uri_host}"

    def write_config(self) -> None:
        sip = {"port": self.sip_port, "rtp_port": self.rtp_port, "rtp_port_range": 200, **self.sip}
        engine = {"record_dir": str(self.record_dir), "socket": str(self.workdir / "engine.sock"), **self.engine}
        sup = {"drain_s": 5.0, "runtime_dir": str(self.workdir / "run"), "restart_backoff_s": 0.2,
               "worker_port": free_port_run(self.supervisor.get("workers", 1), below=60000), **self.supervisor}
        # The WebRTC worker only where a test asks for it (webrtc={"enabled": True, ...}); ICE on loopback.
        webrtc = {"enabled": False, "host_addresses": ["127.0.0.1"], **self.webrtc}
        tables = {"sip": sip, "http": {"port": self.http_port}, "engine": engine, "media": self.media,
                  "supervisor": sup, "webrtc": webrtc, "kamailio": self.kamailio, "log": {"format": "json", "level": "info"}}
        lines = [f'dialplan = "{self.dialplan_path}"']
        for name, table in tables.items():
            nested = {k: v for k, v in table.items() if isinstance(v, dict)}
            lines.append(f"[{name}]")
            lines += [f"{k} = {toml_value(v)}" for k, v in table.items() if k not in nested]
            for sub, values in nested.items():
                lines.append(f"[{name}.{sub}]")
                lines += [f"{k} = {toml_value(v)}" for k, v in values.items()]
        self.config_path.write_text("\n".join(lines) + "\n")
        plan = []
        for entry in self.entries:
            plan.append("[[entry]]")
            plan += [f"{k} = {toml_value(v)}" for k, v in entry.items()]
        self.dialplan_path.write_text("\n".join(plan) + "\n")

    def start(self) -> "Gateway":
        self.write_config()
        log = open(self.log_path, "wb")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env,
        )
        wait_until(lambda: self.health()[0] == 200 or self.proc.poll() is not None, 30, "gateway /healthz")
        if self.proc.poll() is not None:
            raise RuntimeError(f"talkover serve exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
        return self

    def command(self) -> list[str]:
        return [sys.executable, "-m", "gateway.cli", "serve", "--config", str(self.config_path)]

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.proc = None
        return code

    # -- observation -------------------------------------------------------------------------
    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=5) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, b""

    def health(self) -> tuple[int, dict[str, Any]]:
        code, body = self.get("/healthz")
        return code, json.loads(body) if body else {}

    def calls(self) -> list[dict[str, Any]]:
        code, body = self.get("/calls")
        return json.loads(body)["calls"] if code == 200 else []

    def metric(self, name: str, labels: str = "") -> float:
        _, body = self.get("/metrics")
        key = f"{name}{{{labels}}}" if labels else name
        for line in body.decode().splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return 0.0

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_events(self, event: str | None = None, **match: Any) -> list[dict[str, Any]]:
        out = []
        for line in self.log_text().splitlines():
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if event is not None and rec.get("event") != event:
                continue
            if all(rec.get(k) == v for k, v in match.items()):
                out.append(rec)
        return out

    def wait_log(self, event: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        return wait_until(lambda: (self.log_events(event, **match) or [None])[-1], timeout, f"log event {event!r} {match}")

    def turns(self, call_id: str | None = None) -> list[str]:
        """The engine's turn notes ("speak greeting #1 ...", "dtmf 5", "hold", ...) in order."""
        match = {"call_id": call_id} if call_id else {}
        return [r["what"] for r in self.log_events("turn", **match)]

    def wait_turn(self, prefix: str, call_id: str | None = None, timeout: float = 10, count: int = 1) -> list[str]:
        def found() -> list[str]:
            hits = [w for w in self.turns(call_id) if w.startswith(prefix)]
            return hits if len(hits) >= count else []

        return wait_until(found, timeout, f"engine turn note {prefix!r} x{count}")

    def only_call(self) -> dict[str, Any]:
        return wait_until(lambda: (self.calls() or [None])[0], 10, "a call in /calls")

    def worker_pid(self) -> int:
        code, body = self.health()
        return int(body["workers"][0]["pid"])

    def engine_pids(self) -> list[int]:
        out = subprocess.run(["pgrep", "-f", f"engine.server --socket {self.workdir}/"], capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def engine_pid(self) -> int:
        pids = self.engine_pids()
        if len(pids) != 1:
            raise RuntimeError(f"expected one engine process for {self.workdir}, found {pids}")
        return pids[0]

    def recording(self, call_id: str, side: str) -> Path:
        matches = sorted(self.record_dir.glob(f"*{call_id[:40]}*.{side}.wav"))
        if not matches:
            raise FileNotFoundError(f"no {side} recording for {call_id} in {self.record_dir}")
        return matches[0]

