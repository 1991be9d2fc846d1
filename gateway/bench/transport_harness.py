"""What every `talkover bench transport` run uses: child processes and their CPU time, the
sending loops (the media clock's view: paced bursts or as fast as taken) and the receiving
thread (the worker's engine-link view)."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import engine
from engine import wire
from engine.session import FRAME_MS, FRAME_SAMPLES

TICK_S = FRAME_MS / 1000
FAST_LIMIT_S = 10.0
QUICK_FAST_LIMIT_S = 3.0
START_TIMEOUT_S = 10.0
DRAIN_TIMEOUT_S = 3.0
PEER_MAX_S = 300.0  # a peer orphaned by a crashed bench exits on its own
SNDBUF = 1 << 20  # as gateway/engine_link.py and engine/server.py set it

ROOT = Path(engine.__file__).resolve().parents[1]  # holds engine/ and gateway/
PEER_MODULE = "gateway.bench.transport"  # `python -m` it to start a benchmark peer
PCM = np.random.default_rng(1).integers(-3000, 3000, FRAME_SAMPLES, dtype=np.int16).tobytes()
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- processes and CPU accounting -------------------------------------------------------


class ChildProcess:
    """A child Python process, logging to a file, terminated on close whatever happened."""

    def __init__(self, args: list[str], log_path: Path, pass_fds: tuple[int, ...] = ()) -> None:
        env = dict(os.environ)
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # keep the bench out of a live gateway's metrics
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, *args], stdout=self._log, stderr=subprocess.STDOUT, env=env, pass_fds=pass_fds
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.proc.args[1:3]} exited {self.proc.returncode}: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-1500:]
        except OSError:
            return ""

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=3)
        self._log.close()


def cpu_ns(pid: int) -> int:
    """CPU time of all threads of `pid` in ns."""
    try:
        total = 0
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        return total
    except (OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // _CLK_TCK  # utime + stime


def wait_idle(pid: int, quiet_s: float = 0.02, timeout_s: float = DRAIN_TIMEOUT_S) -> tuple[int, float]:
    """(CPU ns, perf_counter when it last ran) of `pid` once it has not run for `quiet_s`:
    by then it has handled all it was sent."""
    last, since = cpu_ns(pid), time.perf_counter()
    deadline = since + timeout_s
    while time.perf_counter() < deadline:
        time.sleep(0.002)
        now = cpu_ns(pid)
        if now != last:
            last, since = now, time.perf_counter()
        elif time.perf_counter() - since >= quiet_s:
            break
    return last, since


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.001)


# -- the sending side: the media clock's view ----------------------------------------------

SendFn = Callable[[int, int], bool]  # (session index, t0 ns) -> accepted
WaitRoomFn = Callable[[float], None]  # (deadline) -> returns when there may be room again


@dataclass
class SendStats:
    sent: int = 0
    dropped: int = 0
    cpu_ns: int = 0
    walls_ns: list[int] = field(default_factory=list)
    start: float = 0.0  # perf_counter
    end: float = 0.0


def _sleep_until(t: float) -> None:
    delay = t - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


def _paced(send: SendFn, sessions: int, ticks: int) -> SendStats:
    """A burst of one frame per session every 20 ms; a refused frame is dropped, as in the product."""
    st = SendStats(start=time.perf_counter())
    for tick in range(ticks):
        _sleep_until(st.start + tick * TICK_S)
        c0 = time.thread_time_ns()
        for i in range(sessions):
            t0 = time.perf_counter_ns()
            if send(i, t0):
                st.sent += 1
            else:
                st.dropped += 1
            st.walls_ns.append(time.perf_counter_ns() - t0)
        st.cpu_ns += time.thread_time_ns() - c0
    st.end = time.perf_counter()
    return st


def _fast(send: SendFn, wait_room: WaitRoomFn, sessions: int, frames: int, limit_s: float) -> SendStats:
    """As fast as the receiver takes them: when full, wait for room (not counted as CPU) and retry."""
    st = SendStats(start=time.perf_counter())
    deadline = st.start + limit_s
    i = 0
    while st.sent < frames and time.perf_counter() < deadline:
        c0 = time.thread_time_ns()
        ok = True
        for _ in range(min(sessions, frames - st.sent)):
            t0 = time.perf_counter_ns()
            ok = send(i, t0)
            st.walls_ns.append(time.perf_counter_ns() - t0)
            if not ok:
                break
            st.sent += 1
            i = (i + 1) % sessions
        st.cpu_ns += time.thread_time_ns() - c0
        if not ok:
            st.dropped += 1
            wait_room(deadline)
    st.end = time.perf_counter()
    return st


def drive(send: SendFn, wait_room: WaitRoomFn, sessions: int, mode: str, amount: int, quick: bool) -> SendStats:
    if mode == "paced":
        return _paced(send, sessions, amount)
    return _fast(send, wait_room, sessions, amount, QUICK_FAST_LIMIT_S if quick else FAST_LIMIT_S)


def wait_writable(sock: socket.socket, deadline: float) -> None:
    select.select([], [sock], [], max(0.0, min(1.0, deadline - time.perf_counter())))


# -- the receiving side: the worker's engine-link thread -------------------------------------


class Receiver(threading.Thread):
    """Counts replies, their round trips and its own CPU time (polling included)."""

    def __init__(self) -> None:
        super().__init__(name="bench-recv", daemon=True)
        self.rtts_ns: list[int] = []
        self.count = 0
        self.cpu_ns = 0

    def wait_for(self, n: int) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while self.count < n and time.monotonic() < deadline and self.is_alive():
            time.sleep(0.001)


class SockReceiver(Receiver):
    """Blocking recv + wire.decode, as gateway/engine_link.py does; stopped by shutting the socket."""

    def __init__(self, sock: socket.socket, rtt_of: Callable[[wire.Decoded, int], int | None]) -> None:
        super().__init__()
        self.sock, self.rtt_of = sock, rtt_of

    def run(self) -> None:
        c0 = time.thread_time_ns()
        while True:
            try:
                msg = self.sock.recv(wire.MAX_MESSAGE)
            except OSError:
                break
            if not msg:
                break
            now = time.perf_counter_ns()
            try:
                rtt = self.rtt_of(wire.decode(msg), now)
            except wire.WireError:
                continue
            if rtt is not None:
                self.rtts_ns.append(rtt)
                self.count += 1
        self.cpu_ns = time.thread_time_ns() - c0


def shutdown_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
