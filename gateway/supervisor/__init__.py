"""`talkover serve`: starts the engine and the gateway workers, watches and restarts them.

One SIP worker listens on [sip] itself; a pool (supervisor.workers > 1) sits behind
Kamailio (gateway/supervisor/pool.py, kamailio.py); SIGHUP restarts the pool one worker
at a time without failing a call.

It owns the HTTP listener (/metrics aggregated over every process, /healthz, /calls) and
the shutdown: SIGTERM → the worker drains (new calls 503, live calls may finish for
`supervisor.drain_s`, then BYE), then the engine stops, then the supervisor exits 0.
PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is imported anywhere, so
`gateway.cli` sets it before importing this module.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from engine.logs import get_logger
from engine.signals import SignalLatch
from gateway.config import Config, dump_config
from gateway.supervisor.children import Child
from gateway.supervisor.http import HttpServer
from gateway.supervisor.kamailio import FrontDoor, Kamailio
from gateway.supervisor.kamailio_rpc import KamailioError
from gateway.supervisor.pool import RollingRestart, plan_workers
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
        self.plans = plan_workers(cfg, run)
        self.sip_workers = [
            Child(p.name, [py, "-m", "gateway.sip.worker", "--config", str(p.config_path), "--name", p.name],
                  with_status=True, backoff_s=backoff)
            for p in self.plans
        ]
        self.workers = list(self.sip_workers)
        self.kamailio: Kamailio | None = None
        if len(self.plans) > 1 and cfg.supervisor.front_door:
            door = FrontDoor.from_config(cfg, [p.address for p in self.plans], calls_per_worker=cfg.sip.max_calls)
            self.kamailio = Kamailio(door, run / "kamailio")
        self._rolling: RollingRestart | None = None
        self._hup = SignalLatch()  # SIGHUP: rolling restart of the SIP workers
        if cfg.webrtc.enabled:  # browser calls: gateway/webrtc (aiortc) in its own process
            webrtc_argv = [py, "-m", "gateway.webrtc.worker", "--config", str(self.resolved), "--name", "webrtc"]
            self.workers.append(Child("webrtc", webrtc_argv, with_status=True, backoff_s=backoff))
        self.webrtc_socket = str(run / SOCKET_NAME)
        self.http = HttpServer(cfg.http.host, cfg.http.port, self.health, self.calls, self.webrtc_signal)
        self._stop = SignalLatch()  # SIGTERM / SIGINT: drain and exit

    def run(self) -> int:
        self._stop.install(signal.SIGTERM, signal.SIGINT)
        self._hup.install(signal.SIGHUP)
        self.engine.start()
        self._wait_for_engine()
        for w in self.workers:
            w.start()
        if self.kamailio is not None:
            try:
                self.kamailio.start()
            except KamailioError as exc:
                log.error("kamailio failed to start", error=str(exc))
                self._stop.set()
        self.http.start()
        log.info("talkover serving", sip=f"{self.cfg.sip.host}:{self.cfg.sip.port}", workers=len(self.plans),
                 http=f"{self.cfg.http.host}:{self.cfg.http.port}")
        while not self._stop.wait(0.1):
            self._watch()
        why = signal.Signals(self._stop.signum).name if self._stop.signum else "kamailio failed"
        log.info("stopping: draining workers", drain_s=self.cfg.supervisor.drain_s, why=why)
        for w in self.workers:  # all drain at once: none takes new calls while another drains
            if w.alive and w.proc is not None:
                w.proc.send_signal(signal.SIGTERM)
        codes = {w.name: w.terminate(timeout=self.cfg.supervisor.drain_s + 10) for w in self.workers}
        codes["engine"] = self.engine.terminate(timeout=5)
        if self.kamailio is not None:
            self.kamailio.stop()
        self.http.stop()
        unclean = {name: code for name, code in codes.items() if code not in (0, None)}
        if unclean:
            log.error("talkover stopped, not cleanly", exit_codes=unclean)
            return 1
        log.info("talkover stopped")
        return 0

    def _watch(self) -> None:
        for child in [self.engine, *self.workers]:
            child.read_status()
            if child.expect_exit:
                continue  # the rolling restart owns it
            child.exited()
            if child.restart_due():
                child.restarts += 1
                child.start()
            child.healthy_for(HEARTBEAT_S)
        if self.kamailio is not None and not self.kamailio.alive and not self._stop.is_set:
            log.error("kamailio died: restarting it")
            try:
                self.kamailio.start()
            except KamailioError as exc:
                log.error("kamailio failed to restart", error=str(exc))
        if self._hup.is_set and self._rolling is None:
            self._hup.clear()
            pairs = [(c, p.address) for c, p in zip(self.sip_workers, self.plans)]
            self._rolling = RollingRestart(pairs, self.kamailio, self.cfg.supervisor.drain_s)
            log.info("rolling restart of the SIP workers", workers=[c.name for c, _ in pairs])
        if self._rolling is not None:
            self._rolling.step()
            if self._rolling.done:
                log.info("rolling restart done", restarted=self._rolling.restarted)
                self._rolling = None

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
        ok = self.engine.alive and not self._stop.is_set
        if self.kamailio is not None:
            ok = ok and self.kamailio.alive
        sip_up = 0
        for w in self.workers:
            # A status written before the engine's last (re)start cannot vouch for the link to it.
            fresh = w.alive and w.status_at > self.engine.started_at and now - w.status_at < HEARTBEAT_S
            st = w.status
            up = fresh and bool(st.get("engine_connected")) and not st.get("draining")
            if w in self.sip_workers:
                sip_up += up  # one SIP worker suffices; a pool degrades, it does not go down
            else:
                ok = ok and up
            workers.append({"name": w.name, "up": up, "pid": st.get("pid"), "restarts": w.restarts,
                            "calls": len(st.get("calls", [])), "max_calls": st.get("max_calls"),
                            "free_ports": st.get("free_ports"), "threads": st.get("threads"),
                            "vad_batch": st.get("vad_batch")})
        ok = ok and sip_up > 0
        detail: dict[str, Any] = {"engine": {"up": self.engine.alive, "restarts": self.engine.restarts}, "workers": workers}
        if self.kamailio is not None:
            detail["kamailio"] = {"up": self.kamailio.alive, "pid": self.kamailio.pid}
        return ok, detail

    def webrtc_signal(self, request: SignalRequest) -> SignalReply:
        if not self.cfg.webrtc.enabled:
            return SignalReply(404, {"error": "WebRTC calls are disabled ([webrtc] enabled = false)"})
        return forward(self.webrtc_socket, request)

    def calls(self) -> list[dict[str, Any]]:
        return [{**c, "worker": w.name} for w in self.workers for c in w.status.get("calls", [])]
