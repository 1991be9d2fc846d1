"""`talkover bench transport` over the product's Unix SEQPACKET socket: against the real engine
process (engine-silent, engine-echo) and against a bare echo peer (sock-raw)."""

from __future__ import annotations

import collections
import os
import selectors
import socket
import time
from pathlib import Path

from engine import wire
from engine.session import EventKind, SessionEvent, SessionInfo
from engine.turns.controller import TurnSettings
from gateway.bench.transport_harness import (
    PCM,
    PEER_MAX_S,
    PEER_MODULE,
    SNDBUF,
    START_TIMEOUT_S,
    ChildProcess,
    SockReceiver,
    drive,
    shutdown_socket,
    wait_idle,
    wait_writable,
)
from gateway.bench.transport_result import Result, result_of

ENGINE_SLOTS = 64


# -- socket against the real engine -------------------------------------------------------


class EngineProcess:
    """`python -m engine.server` in a temporary directory, ready to accept workers."""

    def __init__(self, tmp: Path) -> None:
        self.path = str(tmp / "engine.sock")
        args = ["-m", "engine.server", "--socket", self.path, "--slots", str(ENGINE_SLOTS)]
        self.proc = ChildProcess(args, tmp / "engine.log")
        try:
            self._wait_ready()
        except BaseException:
            self.proc.close()
            raise

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            self.proc.check_alive()
            if os.path.exists(self.path):
                try:
                    self.connect().close()
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        raise RuntimeError(f"engine socket {self.path} not ready after {START_TIMEOUT_S:.0f} s: {self.proc.log_tail()}")

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            sock.connect(self.path)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        except OSError:
            sock.close()
            raise
        return sock

    def close(self) -> None:
        self.proc.close()


def _recv_until(sock: socket.socket, deadline: float) -> wire.Decoded:
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    try:
        msg = sock.recv(wire.MAX_MESSAGE)
    except TimeoutError as exc:
        raise RuntimeError("the engine did not answer in time") from exc
    if not msg:
        raise RuntimeError("the engine closed the connection")
    return wire.decode(msg)


def _info(key: int, agent: dict[str, object]) -> SessionInfo:
    return SessionInfo(call_id=f"bench-{key}", called="bench", caller="bench", agent=dict(agent), transport="test")


def _open_sessions(sock: socket.socket, n: int, agent: dict[str, object]) -> list[int]:
    deadline = time.monotonic() + START_TIMEOUT_S
    for key in range(n):
        sock.send(wire.encode_open(key, _info(key, agent)))
    slots: dict[int, int] = {}
    while len(slots) < n:
        msg = _recv_until(sock, deadline)
        if msg[0] is not wire.MsgType.OPENED:
            continue
        _, slot, key, reason = msg  # type: ignore[misc]
        if slot != wire.NO_SLOT:
            slots[key] = slot  # type: ignore[index]
            continue
        # The engine may not have handled the previous run's disconnect yet: retry.
        if time.monotonic() > deadline:
            raise RuntimeError(f"engine refused a session: {reason}")
        time.sleep(0.05)
        sock.send(wire.encode_open(key, _info(key, agent)))  # type: ignore[arg-type]
    return [slots[k] for k in range(n)]


def _start_greetings(sock: socket.socket, slots: list[int]) -> None:
    """STARTED plays the greeting; the controller emits `lead_frames` at once, then one per caller frame."""
    for slot in slots:
        sock.send(wire.encode_event(slot, SessionEvent(EventKind.STARTED, time.monotonic())))
    deadline = time.monotonic() + START_TIMEOUT_S
    want, got = len(slots) * TurnSettings().lead_frames, 0
    while got < want:
        if _recv_until(sock, deadline)[0] is wire.MsgType.AUDIO:
            got += 1


def run_engine(eng: EngineProcess, agent: dict[str, object], sessions: int, mode: str, amount: int, quick: bool) -> Result:
    echo = agent.get("agent") == "echo"
    sock = eng.connect()
    receiver: SockReceiver | None = None
    try:
        slots = _open_sessions(sock, sessions, agent)
        if echo:
            _start_greetings(sock, slots)
        sock.settimeout(None)
        # AUDIO carries no timestamp: match each to the oldest unanswered frame of its slot.
        pending = [collections.deque[int]() for _ in slots]
        index = {slot: i for i, slot in enumerate(slots)}

        def rtt_of(msg: wire.Decoded, now: int) -> int | None:
            if msg[0] is not wire.MsgType.AUDIO or not pending[index[msg[1]]]:
                return None
            return now - pending[index[msg[1]]].popleft()

        def send(i: int, t0: int) -> bool:
            pending[i].append(t0)
            try:
                sock.send(wire.encode_frame(slots[i], t0 / 1e9, PCM), socket.MSG_DONTWAIT)
                return True
            except BlockingIOError:
                pending[i].pop()
                return False

        if echo:
            receiver = SockReceiver(sock, rtt_of)
            receiver.start()
        cpu0, _ = wait_idle(eng.proc.pid)
        stats = drive(send, lambda d: wait_writable(sock, d), sessions, mode, amount, quick)
        if receiver is not None:
            receiver.wait_for(stats.sent)
        cpu1, done = wait_idle(eng.proc.pid)
        eng.proc.check_alive()
    finally:
        shutdown_socket(sock)  # wakes the receiver; the engine frees this connection's slots
        if receiver is not None:
            receiver.join(timeout=2)
        sock.close()
    name = "engine-echo" if echo else "engine-silent"
    return result_of(name, mode, sessions, stats, cpu1 - cpu0, done, receiver)


# -- socket to a bare echo peer ---------------------------------------------------------------


def run_sock_raw(tmp: Path, sessions: int, mode: str, amount: int, quick: bool) -> Result:
    echo = mode == "paced"
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    mine.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    args = ["-m", PEER_MODULE, "peer-sock", str(theirs.fileno()), "echo" if echo else "oneway"]
    try:
        peer = ChildProcess(args, tmp / "peer.log", pass_fds=(theirs.fileno(),))
    except OSError:
        mine.close()
        raise
    finally:
        theirs.close()
    receiver: SockReceiver | None = None
    try:
        mine.settimeout(START_TIMEOUT_S)
        if mine.recv(16) != b"R":
            raise RuntimeError(f"socket peer did not start: {peer.log_tail()}")
        mine.settimeout(None)

        def send(i: int, t0: int) -> bool:
            try:
                mine.send(wire.encode_frame(i, t0 / 1e9, PCM), socket.MSG_DONTWAIT)
                return True
            except BlockingIOError:
                return False

        def rtt_of(msg: wire.Decoded, now: int) -> int | None:
            return now - round(msg[2] * 1e9) if msg[0] is wire.MsgType.FRAME else None  # type: ignore[operator]

        if echo:
            receiver = SockReceiver(mine, rtt_of)
            receiver.start()
        cpu0, _ = wait_idle(peer.pid)
        stats = drive(send, lambda d: wait_writable(mine, d), sessions, mode, amount, quick)
        if receiver is not None:
            receiver.wait_for(stats.sent)
        cpu1, done = wait_idle(peer.pid)
        peer.check_alive()
    finally:
        shutdown_socket(mine)
        if receiver is not None:
            receiver.join(timeout=2)
        mine.close()
        peer.close()
    return result_of("sock-raw", mode, sessions, stats, cpu1 - cpu0, done, receiver)


def peer_sock(fd: int, echo: bool) -> int:
    """Receives like the engine's selector loop (bounded batches); echoes each message if asked."""
    sock = socket.socket(fileno=fd)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
    sock.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(sock, selectors.EVENT_READ)
    sock.send(b"R")
    parent, deadline = os.getppid(), time.monotonic() + PEER_MAX_S
    while time.monotonic() < deadline and os.getppid() == parent:
        for _ in sel.select(timeout=0.5):
            for _ in range(256):
                try:
                    msg = sock.recv(wire.MAX_MESSAGE)
                except BlockingIOError:
                    break
                except OSError:
                    return 0
                if not msg:
                    return 0
                if echo:
                    try:
                        sock.send(msg)
                    except BlockingIOError:
                        pass
    return 0
