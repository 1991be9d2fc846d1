"""The server `talkover bench pool` measures: W SIP workers, Kamailio in front of more than one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gateway.bench.pool_plan import CALLS_PER_WORKER
from gateway.bench.server import free_port_run
from gateway.bench.sipp_driver import BenchServer
from gateway.supervisor.kamailio import MAX_UNIX_PATH
from gateway.supervisor.kamailio_rpc import KamailioError, KamailioRpc


class PoolServer(BenchServer):
    """`talkover serve` with W SIP workers (and Kamailio in front when W > 1), no WebRTC worker."""

    def __init__(self, work: Path, workers: int, entry: dict[str, Any],
                 settings: dict[str, dict[str, Any]] | None = None) -> None:
        self.workers = workers
        self.settings = settings or {}
        self.rtp_range = max(400, 16 * workers)
        super().__init__(work, CALLS_PER_WORKER * workers, entry)

    def _write(self, calls: int) -> None:
        self.rtp_port = min(self.rtp_port, 60000 - self.rtp_range) & ~1
        tables: dict[str, dict[str, Any]] = {
            "sip": {"port": self.sip_port, "rtp_port": self.rtp_port, "rtp_port_range": self.rtp_range},
            "sip.flood": {"allow": self.flood_allow},
            "http": {"port": self.http_port},
            "engine": {"socket": str(self.work / "engine.sock"), "slots": calls + 4},
            "webrtc": {"enabled": False},
            "supervisor": {"workers": self.workers, "worker_port": free_port_run(self.workers), "drain_s": 5.0,
                           "runtime_dir": str(self.work / "run"), "restart_backoff_s": 0.5},
            # one UDP reader: parallel ones can relay a 180 after its 200, which SIPp (not a phone) fails the call on
            "kamailio": {"ping_interval_s": 1, "children": 1},
            "log": {"format": "json", "level": "info"},
        }  # fmt: skip
        for table, values in self.settings.items():
            tables[table] = {**tables.get(table, {}), **values}
        self.write_files(tables, self.entry)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def calls(self) -> list[dict[str, Any]]:
        """Every worker's calls."""
        code, body = self.get_json("/calls")
        return list(body.get("calls", [])) if code == 200 else []

    def dispatching_to_all(self) -> bool:
        """Kamailio's dispatcher has every worker active (it probes them once a second)."""
        self.check_alive()
        sock = (self.work / "run" / "kamailio" / "ctl.sock").absolute()
        if len(str(sock)) > MAX_UNIX_PATH:  # Kamailio put its socket in a temp dir of its own
            time.sleep(2.0)  # then: two of its probes, a measured wait rather than a condition
            return True
        try:
            dests = KamailioRpc(str(sock)).destinations() if sock.exists() else []
        except KamailioError:
            return False
        return len(dests) == self.workers and all(d.state == "active" for d in dests)

    def workers_up(self) -> bool:
        self.check_alive()
        code, body = self.get_json("/healthz")
        sip = [w for w in body.get("workers", []) if str(w.get("name", "")).startswith("w")]
        return code == 200 and len(sip) == self.workers and all(w.get("up") for w in sip)
