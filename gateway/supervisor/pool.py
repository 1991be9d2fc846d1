"""The SIP worker pool: where each worker listens, and restarting them one at a time.

One worker (the default) listens on [sip] host/port itself. A pool of N listens on
supervisor.worker_host:worker_port+i behind Kamailio, which takes [sip] host/port; every
worker gets its own config file (its SIP port and a slice of the RTP port range) and
trusts the front door in its flood limit (all INVITEs arrive from Kamailio's address).

A rolling restart takes one worker out of Kamailio's dispatcher, lets it drain (its live
calls finish within supervisor.drain_s, new ones go to the others), starts a replacement,
and puts it back once it reports in — then the next worker.
"""

from __future__ import annotations

import copy
import enum
import ipaddress
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from engine.logs import get_logger
from gateway.config import Config, dump_config
from gateway.supervisor.children import Child
from gateway.supervisor.kamailio import Kamailio, WorkerAddress
from gateway.supervisor.kamailio_rpc import KamailioError

log = get_logger(component="pool")


@dataclass
class WorkerPlan:
    name: str
    config_path: Path
    address: WorkerAddress


def plan_workers(cfg: Config, run_dir: Path) -> list[WorkerPlan]:
    """Write one resolved config per SIP worker and say where each listens."""
    n = cfg.supervisor.workers
    plans = []
    share = max(8, cfg.sip.rtp_port_range // n) & ~1  # RTP+RTCP pairs
    for i in range(n):
        wcfg = copy.deepcopy(cfg)
        if n > 1:
            wcfg.sip.host = cfg.supervisor.worker_host
            wcfg.sip.port = cfg.supervisor.worker_port + i
            wcfg.sip.rtp_port = cfg.sip.rtp_port + i * share
            wcfg.sip.rtp_port_range = share
            wcfg.sip.register.enabled = False  # one registration per identity: Kamailio's side
            if cfg.supervisor.front_door:  # a remote front door must be in [sip.flood] allow already
                front = _cidr(cfg.sip.host if cfg.sip.host not in ("0.0.0.0", "::") else cfg.supervisor.worker_host)
                if front not in wcfg.sip.flood.allow:
                    wcfg.sip.flood.allow.append(front)
        path = run_dir / f"config-w{i}.json"
        dump_config(wcfg, path)
        plans.append(WorkerPlan(f"w{i}", path, WorkerAddress(wcfg.sip.host, wcfg.sip.port, f"w{i}")))
    return plans


def _cidr(host: str) -> str:
    return str(ipaddress.ip_network(host))


class Phase(enum.Enum):
    DRAINING = "draining"
    STARTING = "starting"


class RollingRestart:
    """Stepped from the supervisor's loop; never blocks it for long."""

    def __init__(self, workers: list[tuple[Child, WorkerAddress]], kamailio: Kamailio | None, drain_s: float) -> None:
        self._queue = list(workers)
        self._kam = kamailio
        self._drain_s = drain_s
        self._current: tuple[Child, WorkerAddress] | None = None
        self._phase = Phase.DRAINING
        self._since = 0.0
        self.restarted: list[str] = []

    @property
    def done(self) -> bool:
        return self._current is None and not self._queue

    def step(self) -> None:
        now = time.monotonic()
        if self._current is None:
            if not self._queue:
                return
            self._current = self._queue.pop(0)
            child, addr = self._current
            self._dispatcher("drain", addr)
            log.info("rolling restart: draining", worker=child.name, drain_s=self._drain_s)
            child.expect_exit = True
            if child.proc is not None:
                child.proc.send_signal(signal.SIGTERM)
            self._phase, self._since = Phase.DRAINING, now
            return
        child, addr = self._current
        if self._phase is Phase.DRAINING:
            if child.proc is not None and now - self._since > self._drain_s + 10:
                log.error("rolling restart: worker did not stop; killing", worker=child.name)
                child.proc.kill()
            if child.proc is None or child.proc.poll() is not None:
                child.exited()
                child.start()
                child.expect_exit = False
                child.restarts += 1
                self._phase, self._since = Phase.STARTING, now
        elif child.status_at > child.started_at and child.status.get("engine_connected"):
            self._dispatcher("restore", addr)
            log.info("rolling restart: back in service", worker=child.name)
            self.restarted.append(child.name)
            self._current = None
        elif now - self._since > 30:
            log.error("rolling restart: replacement did not report in; moving on", worker=child.name)
            self._dispatcher("restore", addr)
            self._current = None

    def _dispatcher(self, action: str, addr: WorkerAddress) -> None:
        if self._kam is None:
            return
        try:
            getattr(self._kam.rpc, action)(addr.uri)
        except KamailioError as exc:
            log.error("dispatcher update failed", action=action, worker=addr.uri, error=str(exc))
