"""`talkover serve`: starts the engine and the gateway worker, watches and restarts them.

It owns the HTTP listener (/metrics aggregated over every process, /healthz, /calls) and
the shutdown: SIGTERM → the worker drains (new calls 503, live calls may finish for
`supervisor.drain_s`, then BYE), then the engine stops, then the supervisor exits 0.
PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is imported anywhere, so
`gateway.cli` sets it before importing this module.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from engine.logs import get_logger
from gateway.config import Config, dump_config
from gateway.supervisor.children import Child
from gateway.supervisor.http import HttpServer
from gateway.webrtc.signalling import SOCKET_NAME, SignalReply, SignalRequest, forward

log = get_logger(component="supervisor")
HEARTBEAT_S = 3.0


class Supervisor:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        run = cfg.runtime_dir()
        self.resolved = run / "config.json"
        dump_config(cfg, self.resolved)
        py = sys.executable
        e = cfg.engine
        engine_argv = [py, "-m", "engine.server", "--socket", cfg.engine_socket(), "--slots", str(e.slots)]
        engine_argv += ["--record-dir", e.record_dir, "--log-level", cfg.log.level, "--log-format", cfg.log.format]
        engine_argv += ["--model", e.model, "--device", e.device, "--threads", str(e.threads)]
        backoff = cfg.supervisor.restart_backoff_s
        self.engine = Child("engine", engine_argv, backoff_s=backoff)
        worker_argv = [py, "-m", "gateway.sip.worker", "--config", str(self.resolved), "--name", "w0"]
        self.workers = [Child("w0", worker_argv, with_status=True, backoff_s=backoff)]
        if cfg.webrtc.enabled:  # browser calls: gateway/webrtc (aiortc) in its own process
            webrtc_argv = [py, "-m", "gateway.webrtc.worker", "--config", str(self.resolved), "--name", "webrtc"]
            self.workers.append(Child("webrtc", webrtc_argv, with_status=True, backoff_s=backoff))
        self.webrtc_socket = str(run / SOCKET_NAME)
        self.http = HttpServer(cfg.http.host, cfg.http.port, self.health, self.calls, self.webrtc_signal)
        self._stop = threading.Event()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self._stop.set())
        self.engine.start()
        self._wait_for_engine()
        for w in self.workers:
            w.start()
        self.http.start()
        log.info("talkover serving", sip=f"{self.cfg.sip.host}:{self.cfg.sip.port}", http=f"{self.cfg.http.host}:{self.cfg.http.port}")
        while not self._stop.wait(0.1):
            for child in [self.engine, *self.workers]:
                child.read_status()
                child.exited()
                if child.restart_due():
                    child.restarts += 1
                    child.start()
                child.healthy_for(HEARTBEAT_S)
        log.info("stopping: draining workers", drain_s=self.cfg.supervisor.drain_s)
        codes = {w.name: w.terminate(timeout=self.cfg.supervisor.drain_s + 10) for w in self.workers}
        codes["engine"] = self.engine.terminate(timeout=5)
        self.http.stop()
        unclean = {name: code for name, code in codes.items() if code not in (0, None)}
        if unclean:
            log.error("talkover stopped, not cleanly", exit_codes=unclean)
            return 1
        log.info("talkover stopped")
        return 0

    def _wait_for_engine(self) -> None:
        sock = Path(self.cfg.engine_socket())
        deadline = time.monotonic() + 15
        while not sock.exists() and time.monotonic() < deadline and self.engine.alive:
            time.sleep(0.02)  # polling a file the child creates; bounded by the deadline
        if not sock.exists():
            log.error("engine did not come up; workers will retry", socket=str(sock))

    def health(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        workers = []
        ok = self.engine.alive and not self._stop.is_set()
        for w in self.workers:
            # A status written before the engine's last (re)start cannot vouch for the link to it.
            fresh = w.alive and w.status_at > self.engine.started_at and now - w.status_at < HEARTBEAT_S
            st = w.status
            up = fresh and bool(st.get("engine_connected")) and not st.get("draining")
            ok = ok and up
            workers.append({"name": w.name, "up": up, "pid": st.get("pid"), "restarts": w.restarts,
                            "calls": len(st.get("calls", [])), "max_calls": st.get("max_calls"),
                            "free_ports": st.get("free_ports"), "threads": st.get("threads")})
        return ok, {"engine": {"up": self.engine.alive, "restarts": self.engine.restarts}, "workers": workers}

    def webrtc_signal(self, request: SignalRequest) -> SignalReply:
        if not self.cfg.webrtc.enabled:
            return SignalReply(404, {"error": "WebRTC calls are disabled ([webrtc] enabled = false)"})
        return forward(self.webrtc_socket, request)

    def calls(self) -> list[dict[str, Any]]:
        return [{**c, "worker": w.name} for w in self.workers for c in w.status.get("calls", [])]
