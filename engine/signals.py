"""Stop and reload requests from POSIX signals, safe to raise from a handler.

A Python signal handler runs in the main thread between two bytecodes of whatever that
thread was doing: inside `threading.Event.wait()` with the event's non-reentrant lock held,
or halfway through a write to the log stream. A handler that sets an Event or logs can
therefore deadlock the process or corrupt a log line (a supervisor that hung on SIGTERM this
way was killed by its stop timeout in CI). So the handler here only sets a bool and writes a
byte to a pipe; the loop that owns the process waits on the pipe and acts in its own time.
"""

from __future__ import annotations

import os
import select
import signal
from types import FrameType


class SignalLatch:
    """Latches once any of its signals arrives; `wait()` sleeps until then or a timeout."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self.signum: int | None = None

    def install(self, *signums: int) -> SignalLatch:
        """Route the signals here (call from the main thread, as `signal.signal` requires)."""
        for signum in signums:
            signal.signal(signum, self._on_signal)
        return self

    @property
    def is_set(self) -> bool:
        return self.signum is not None

    def set(self, signum: int = 0) -> None:
        """Latch from code rather than a signal (lock-free, so also safe in a handler)."""
        if self.signum is None:
            self.signum = signum
        try:
            os.write(self._write_fd, b"\0")
        except (BlockingIOError, OSError):
            pass  # the pipe is full or closed: already woken

    def clear(self) -> None:
        """Re-arm (for a request that may come again, such as SIGHUP)."""
        self.signum = None
        self._drain()

    def wait(self, timeout: float) -> bool:
        """True once latched; returns early when a signal arrives during the wait."""
        if self.signum is None:
            try:
                select.select([self._read_fd], [], [], timeout)
            except (OSError, ValueError):
                pass
        return self.signum is not None

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.set(signum)

    def _drain(self) -> None:
        try:
            while os.read(self._read_fd, 512):
                pass
        except (BlockingIOError, OSError):
            pass
