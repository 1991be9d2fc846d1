"""Child processes of the supervisor: start, watch, restart with backoff, stop."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

from engine.logs import get_logger

log = get_logger(component="supervisor")


@dataclass
class Child:
    name: str
    argv: list[str]
    with_status: bool = False  # a worker reports status lines on a pipe
    backoff_s: float = 0.5
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    status: dict[str, Any] = field(default_factory=dict)
    status_at: float = 0.0
    started_at: float = 0.0
    expect_exit: bool = False  # a rolling restart stopped it: not a death, no backoff
    _status_fd: int | None = None
    _buf: bytes = b""
    _next_start: float = 0.0
    _delay: float = 0.0

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def status_fd(self) -> int | None:
        return self._status_fd

    def start(self) -> None:
        argv, pass_fds = list(self.argv), ()
        write_fd = None
        if self.with_status:
            read_fd, write_fd = os.pipe()
            os.set_blocking(read_fd, False)
            self._status_fd, self._buf = read_fd, b""
            argv += ["--status-fd", str(write_fd)]
            pass_fds = (write_fd,)
        # Own session: a SIGTERM to the supervisor's process group (systemd, a terminal's ^C,
        # `timeout`) must not reach the children directly — the supervisor drains them in
        # order. If the supervisor itself dies, the kernel sends them SIGTERM.
        self.proc = subprocess.Popen(argv, pass_fds=pass_fds, start_new_session=True, preexec_fn=_die_with_parent)
        if write_fd is not None:
            os.close(write_fd)
        self.status, self.status_at, self.started_at = {}, 0.0, time.monotonic()
        log.info("child started", child=self.name, pid=self.proc.pid)

    def read_status(self) -> None:
        if self._status_fd is None:
            return
        try:
            chunk = os.read(self._status_fd, 1 << 16)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            os.close(self._status_fd)
            self._status_fd = None
            return
        self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            try:
                self.status, self.status_at = json.loads(line), time.monotonic()
            except ValueError:
                log.warning("bad status line", child=self.name)

    def exited(self) -> int | None:
        """The exit code if the child died since the last call (and arranges a restart)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        code, pid = self.proc.returncode, self.proc.pid
        self.proc = None
        self.read_status()
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None
        _mark_dead(pid)
        if self.expect_exit:
            log.info("child stopped for a restart", child=self.name, pid=pid, exit_code=code)
            return code
        self._delay = min(10.0, self._delay * 2 if self._delay else self.backoff_s)
        self._next_start = time.monotonic() + self._delay
        log.error("child died", child=self.name, pid=pid, exit_code=code, restart_in_s=self._delay)
        return code

    def restart_due(self) -> bool:
        return self.proc is None and time.monotonic() >= self._next_start

    def healthy_for(self, seconds: float) -> None:
        """Reset the backoff once a child has stayed up."""
        if self.alive and self._delay and self.status_at and time.monotonic() - self.status_at < seconds:
            self._delay = 0.0

    def terminate(self, timeout: float) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.error("child did not stop: killing", child=self.name)
            self.proc.kill()
            code = self.proc.wait()
        _mark_dead(self.proc.pid)
        self.proc = None
        if self._status_fd is not None:
            os.close(self._status_fd)
            self._status_fd = None
        log.info("child stopped", child=self.name, exit_code=code)
        return code


def _die_with_parent() -> None:
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _mark_dead(pid: int) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
