"""The worker's side of the engine transport (engine/wire.py over a Unix SEQPACKET socket).

Sends never block: the clock thread hands frames to the kernel with MSG_DONTWAIT, and a
full socket buffer drops the frame and counts it. One receiver thread (never touching
pjsua2) routes agent audio into playout queues and hands everything that needs pjsua2
(slot grants, hangup, transfer) to the worker's control loop through `on_message`.
"""

from __future__ import annotations

import select
import socket
import threading
from collections import deque
from typing import Callable

from engine import wire
from engine.logs import get_logger

log = get_logger(component="engine_link")

MessageHandler = Callable[[wire.Decoded], None]


class EngineLink:
    def __init__(
        self,
        path: str,
        on_message: MessageHandler,
        on_state: Callable[[bool], None],
    ) -> None:
        self.path = path
        self._on_message = on_message
        self._on_state = on_state
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-link", daemon=True)
        self.dropped = 0
        self.sent = 0
        self._backlog: deque[bytes] = deque()

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2)

    def send_essential(self, msg: bytes) -> bool:
        """Events and slot requests: never dropped while the engine is there. If the socket is
        full they wait in a backlog that the control loop flushes (`flush_backlog`)."""
        if self._backlog or not self.send(msg):
            if self._sock is None:
                return False
            self._backlog.append(msg)
        return True

    def flush_backlog(self) -> None:
        """Control loop only (may wait briefly for the socket to drain). The receiver thread may
        close the socket under it when the engine dies (CI: EBADF from select killed the worker);
        then there is nothing to flush: that thread clears the backlog itself."""
        sock = self._sock
        while self._backlog and sock is not None:
            try:
                if not select.select([], [sock], [], 0.05)[1]:
                    return
            except (OSError, ValueError):  # closed meanwhile: EBADF, or a negative fd
                return
            try:
                sock.send(self._backlog[0], socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            self._backlog.popleft()

    def send(self, msg: bytes) -> bool:
        """Non-blocking; False if the engine is gone or the socket is full (frame dropped)."""
        sock = self._sock
        if sock is None:
            self.dropped += 1
            return False
        try:
            sock.send(msg, socket.MSG_DONTWAIT)
            self.sent += 1
            return True
        except (BlockingIOError, InterruptedError):
            self.dropped += 1
            return False
        except OSError:
            self.dropped += 1
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            sock = self._connect()
            if sock is None:
                return
            self._sock = sock
            log.info("engine connected", path=self.path)
            self._on_state(True)
            self._receive(sock)
            self._sock = None
            self._backlog.clear()  # the engine freed this connection's slots itself
            sock.close()
            if not self._stop.is_set():
                log.warning("engine connection lost", path=self.path)
                self._on_state(False)

    def _connect(self) -> socket.socket | None:
        delay = 0.05
        while not self._stop.is_set():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            try:
                sock.connect(self.path)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
                got = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
                if got < 1 << 20:  # capped by net.core.wmem_max
                    log.warning("engine socket send buffer smaller than asked", bytes=got)
                return sock
            except OSError:
                sock.close()
                self._stop.wait(delay)
                delay = min(delay * 2, 0.25)
        return None

    def _receive(self, sock: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                msg = sock.recv(wire.MAX_MESSAGE)
            except OSError:
                return
            if not msg:
                return
            try:
                decoded = wire.decode(msg)
            except wire.WireError as exc:
                log.error("bad message from engine dropped", error=str(exc))
                continue
            try:
                self._on_message(decoded)
            except Exception:  # a handler bug must not kill the link
                log.exception("engine message handler failed")

