"""Kamailio as the SIP front door of a worker pool: render its config, run it, stop it.

The config is deploy/kamailio/kamailio.cfg.tmpl with its double-braced names filled in
from `[kamailio]` (gateway/config.py) and the worker list; the workers go into a dispatcher
list file beside it. Kamailio runs as a foreground child (`kamailio -DD -E`) with its own
runtime directory, RPC socket and log file — no system service involved:

    door = FrontDoor.from_config(cfg, [WorkerAddress("127.0.0.1", 5071), ...], calls_per_worker=4)
    kam = Kamailio(door, run_dir / "kamailio")
    kam.start()              # render, `kamailio -c`, start, wait for OPTIONS 200 and the RPC socket
    kam.rpc.drain(uri)       # no new calls to that worker; its live calls go on (kamailio_rpc.py)
    kam.stop()

`python -m gateway.supervisor.kamailio` renders, checks or runs a front door of its own
(another host, systemd, Kubernetes): see deploy/kamailio/README.md.
"""

from __future__ import annotations

import ctypes
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from engine.logs import get_logger
from gateway.config import Config, KamailioConfig, REPO_ROOT
from gateway.supervisor.kamailio_rpc import KamailioError, KamailioRpc, KamailioRpcError, find_binary, sip_options_status

log = get_logger(component="kamailio")

TEMPLATE = REPO_ROOT / "deploy" / "kamailio" / "kamailio.cfg.tmpl"
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, UPDATE, REFER, NOTIFY"
DISPATCH_ALGORITHMS = {"call-load": 10, "round-robin": 4}
LOG_LEVELS = {"debug": 3, "info": 2, "warning": 0, "error": -1}  # Kamailio's L_DBG .. L_ERR
MAX_UNIX_PATH = 107
PR_SET_PDEATHSIG = 1
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class WorkerAddress:
    """One gateway worker's SIP address, a dispatcher destination."""

    host: str
    port: int
    name: str = ""
    priority: int = 0  # higher first among equally loaded workers (e.g. prefer this host's own)

    @classmethod
    def parse(cls, text: str, name: str = "") -> WorkerAddress:
        """"host:port", "[v6]:port" or "sip:host:port"."""
        rest = text.strip().removeprefix("sip:")
        host, sep, port = rest.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise KamailioError(f"worker address {text!r} is not host:port")
        return cls(host, int(port), name)

    @property
    def uri(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"sip:{host}:{self.port}"


@dataclass
class FrontDoor:
    """Everything a rendered Kamailio config depends on."""

    listen_host: str
    listen_port: int
    workers: list[WorkerAddress]
    transports: list[str] = field(default_factory=lambda: ["udp", "tcp"])
    advertise: str = ""  # public address put in Record-Route/Via instead of listen_host
    calls_per_worker: int = 4  # the dispatcher's maxload per worker (call-load dispatching)
    retry_after_s: int = 5  # on the 503 sent when no worker is available
    max_call_s: float = 3600.0  # a call's load is forgotten this long after its last BYE-less sign
    log_level: str = "info"
    settings: KamailioConfig = field(default_factory=KamailioConfig)

    @classmethod
    def from_config(cls, cfg: Config, workers: list[WorkerAddress], calls_per_worker: int) -> FrontDoor:
        """The front door of `talkover serve`: it listens where a single worker would ([sip])."""
        remote = [WorkerAddress.parse(w, name=f"remote{i}") for i, w in enumerate(cfg.kamailio.workers)]
        return cls(
            listen_host=cfg.sip.host,
            listen_port=cfg.sip.port,
            workers=[*workers, *remote],
            transports=list(cfg.sip.transports),
            advertise=cfg.sip.public_address,
            calls_per_worker=calls_per_worker,
            retry_after_s=cfg.sip.retry_after_s,
            max_call_s=cfg.sip.max_call_s,
            log_level=cfg.log.level,
            settings=cfg.kamailio,
        )

    def validate(self) -> None:
        problem = self.settings.validate()
        if problem:
            raise KamailioError(f"[kamailio] {problem[0]}: {problem[1]}")
        if not self.workers:
            raise KamailioError("a front door needs at least one worker")
        if len({w.uri for w in self.workers}) != len(self.workers):
            raise KamailioError(f"duplicate worker addresses: {[w.uri for w in self.workers]}")
        if not 0 < self.listen_port < 65536:
            raise KamailioError(f"listen port {self.listen_port} is not 1-65535")
        if self.listen_host in {w.host for w in self.workers if w.port == self.listen_port}:
            raise KamailioError(f"a worker uses the front door's own address {self.listen_host}:{self.listen_port}")
        bad = [t for t in self.transports if t not in ("udp", "tcp")] or ([] if self.transports else ["none"])
        if bad:
            raise KamailioError(f"transports must be 'udp' and/or 'tcp', not {bad}")
        if self.log_level not in LOG_LEVELS:
            raise KamailioError(f"log level {self.log_level!r} is not one of {list(LOG_LEVELS)}")

    def allow_list(self) -> list[str]:
        """Configured CIDRs plus every worker's address (their in-dialog requests come back
        through Kamailio and must never be flood-limited)."""
        nets = [str(ipaddress.ip_network(c, strict=False)) for c in self.settings.allow_list]
        for w in self.workers:
            try:
                nets.append(str(ipaddress.ip_network(w.host)))
            except ValueError:
                pass  # a host name: resolved by Kamailio, not matchable here
        return list(dict.fromkeys(nets))


def render_dispatcher_list(door: FrontDoor) -> str:
    """Set 1 = the workers; flags 8 = probed with OPTIONS from the start."""
    lines = ["# setid destination flags priority attributes  (written by talkover)"]
    for i, w in enumerate(door.workers):
        duid = w.name or f"w{i}"
        lines.append(f"1 {w.uri} 8 {w.priority} duid={duid};maxload={door.calls_per_worker}")
    return "\n".join(lines) + "\n"


def render_config(door: FrontDoor, ctl_socket: str, list_path: str, template: Path = TEMPLATE) -> str:
    door.validate()
    s = door.settings
    listen = []
    for transport in door.transports:
        line = f"listen={transport}:{_host(door.listen_host)}:{door.listen_port}"
        if door.advertise:
            line += f" advertise {_host(door.advertise)}:{door.listen_port}"
        listen.append(line)
    ping_host = door.advertise or (door.listen_host if door.listen_host not in ("0.0.0.0", "::") else "localhost")
    values = {
        "defines": "#!define CALL_LOAD" if s.dispatch == "call-load" else "# round-robin dispatching",
        "log_level": str(LOG_LEVELS[door.log_level]),
        "children": str(s.children),
        "listen_lines": "\n".join(listen),
        "ctl_socket": ctl_socket,
        "no_answer_ms": str(round(s.no_answer_s * 1000)),
        "ring_ms": str(round(s.ring_s * 1000)),
        "flood_window_s": str(s.flood_window_s),
        "flood_requests": str(s.flood_requests),
        "flood_forget_s": str(max(10, 4 * s.flood_window_s)),
        "dispatcher_list": list_path,
        "ping_from_host": _host(ping_host),
        "ping_interval_s": str(s.ping_interval_s),
        "call_expire_s": str(int(door.max_call_s) + 60),
        "setup_expire_s": str(int(s.ring_s + s.no_answer_s * len(door.workers)) + 30),
        "allow": ALLOW,
        "allow_list": ",".join(door.allow_list()),
        "algorithm": str(DISPATCH_ALGORITHMS[s.dispatch]),
        "max_tries": str(len(door.workers)),
        "retry_after_s": str(door.retry_after_s),
    }
    text = template.read_text()
    missing = sorted(set(_PLACEHOLDER.findall(text)) - values.keys())
    if missing:
        raise KamailioError(f"{template}: unknown placeholders {missing}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def check_config(binary: str, cfg_path: Path, timeout_s: float = 20.0) -> str:
    """`kamailio -c`: parses the config and loads its modules; raises with Kamailio's own
    message on any error. Returns its output."""
    try:
        done = subprocess.run(
            [find_binary(binary), "-c", "-f", str(cfg_path)],
            capture_output=True, text=True, timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise KamailioError(f"kamailio -c {cfg_path} did not finish in {timeout_s} s") from exc
    out = done.stdout + done.stderr
    if done.returncode != 0:
        errors = [ln for ln in out.splitlines() if "ERROR" in ln or "CRITICAL" in ln] or out.splitlines()[-10:]
        raise KamailioError(f"kamailio -c {cfg_path} failed (rc={done.returncode}):\n" + "\n".join(errors))
    return out


def _term_with_parent() -> Callable[[], None]:
    """For preexec_fn: SIGTERM to Kamailio when the thread that started it dies, so a
    crashed supervisor (or test) leaves no front door behind. Start it from a thread that
    lives as long as Kamailio should (the supervisor's main thread)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before fork

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return arm


class Kamailio:
    """One Kamailio process for a FrontDoor, with its files in `run_dir`."""

    def __init__(self, door: FrontDoor, run_dir: Path, template: Path = TEMPLATE, log_to_file: bool = True) -> None:
        self.door = door
        self.template = template
        self.log_to_file = log_to_file  # False: Kamailio's log goes to our stderr (journald, kubectl logs)
        self.run_dir = Path(run_dir)
        self.cfg_path = self.run_dir / "kamailio.cfg"
        self.list_path = self.run_dir / "dispatcher.list"
        self.log_path = self.run_dir / "kamailio.log"
        self._socket_dir: Path | None = None  # a short temp dir if run_dir is too deep for a socket
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctl_socket = self._ctl_socket_path()
        self.rpc = KamailioRpc(self.ctl_socket, kamcmd=door.settings.kamcmd)

    def _ctl_socket_path(self) -> str:
        path = self.run_dir / "ctl.sock"
        if len(str(path.absolute())) <= MAX_UNIX_PATH:
            return str(path.absolute())
        self._socket_dir = Path(tempfile.mkdtemp(prefix="talkover-kam-"))
        return str(self._socket_dir / "ctl.sock")

    def write(self) -> Path:
        """Render the config and the dispatcher list into run_dir; returns the config path."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self._socket_dir is not None:
            self._socket_dir.mkdir(exist_ok=True)
        text = render_config(self.door, self.ctl_socket, str(self.list_path.absolute()), self.template)
        self.list_path.write_text(render_dispatcher_list(self.door))
        self.cfg_path.write_text(text)
        return self.cfg_path

    def check(self) -> None:
        check_config(self.door.settings.binary, self.write())

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> None:
        """Write, check, start; returns once Kamailio answers OPTIONS and its RPC socket
        (raises KamailioError with its log tail otherwise, leaving nothing running)."""
        if self.alive:
            raise KamailioError(f"kamailio already running (pid {self.pid})")
        self.check()
        self._require_free_ports()
        Path(self.ctl_socket).unlink(missing_ok=True)
        s = self.door.settings
        argv = [find_binary(s.binary), "-DD", "-E", "-f", str(self.cfg_path), "-Y", str(self.run_dir.absolute()),
                "-m", str(s.shm_mb), "-M", str(s.pkg_mb)]
        with open(self.log_path if self.log_to_file else os.devnull, "ab") as logf:
            out = logf if self.log_to_file else None
            # its own session: stop() can end Kamailio's children with it, and a Ctrl-C meant
            # for the supervisor does not kill the front door before the workers drained
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                         start_new_session=True, preexec_fn=_term_with_parent())
        log.info("kamailio starting", pid=self.proc.pid, listen=f"{self.door.listen_host}:{self.door.listen_port}",
                 workers=[w.uri for w in self.door.workers], log=str(self.log_path))
        try:
            self.wait_ready(s.start_timeout_s)
        except BaseException:
            self.stop()
            raise
        log.info("kamailio ready", pid=self.proc.pid)

    def _require_free_ports(self) -> None:
        host = self.door.listen_host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kinds = {"udp": socket.SOCK_DGRAM, "tcp": socket.SOCK_STREAM}
        for transport in self.door.transports:
            with socket.socket(family, kinds[transport]) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind((host, self.door.listen_port))
                except OSError as exc:
                    raise KamailioError(f"cannot listen on {transport}:{host}:{self.door.listen_port}: {exc.strerror}"
                                        " (another SIP server there?)") from exc

    def wait_ready(self, timeout_s: float) -> None:
        probe_host = self.door.listen_host
        if probe_host in ("0.0.0.0", "::"):
            probe_host = "127.0.0.1" if probe_host == "0.0.0.0" else "::1"
        deadline = time.monotonic() + timeout_s
        rpc_ok = options_ok = False
        last = ""
        while time.monotonic() < deadline:
            if not self.alive:
                raise KamailioError(f"kamailio exited (rc={self.proc.returncode if self.proc else None}) "
                                    f"while starting:\n{self.log_tail()}")
            if not rpc_ok:
                rpc_ok = self.rpc.main_pid() == self.pid  # not a stale socket of another one
            if rpc_ok and not options_ok and "udp" in self.door.transports:
                status = sip_options_status(probe_host, self.door.listen_port, timeout_s=0.3)
                options_ok, last = status == 200, f"OPTIONS answered {status}"
            elif rpc_ok:
                options_ok = True  # TCP only: the RPC answering means the listeners are up
            if rpc_ok and options_ok:
                return
            time.sleep(0.05)  # polling a process that is still binding its sockets; bounded
        raise KamailioError(f"kamailio not ready after {timeout_s} s (rpc={rpc_ok}, {last or 'no OPTIONS answer'}):\n"
                            f"{self.log_tail()}")

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM (Kamailio's main process ends its children), then SIGKILL to its group."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                log.warning("kamailio ignored SIGTERM; killing its process group", pid=proc.pid)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=timeout_s)
            log.info("kamailio stopped", pid=proc.pid, rc=proc.returncode)
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
        return proc.returncode if proc else None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_to_file:
            return "(kamailio logs to this process's stderr)"
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Kamailio:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["FrontDoor", "Kamailio", "KamailioError", "KamailioRpc", "KamailioRpcError", "WorkerAddress",
           "check_config", "render_config", "render_dispatcher_list"]
