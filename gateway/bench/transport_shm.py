"""`talkover bench transport`'s shared-memory alternative (benchmark code only): SPSC rings in
multiprocessing.shared_memory, receivers busy-polling (shm-busy) or sleeping between polls
(shm-sleep)."""

from __future__ import annotations

import os
import struct
import threading
import time
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory
from pathlib import Path

import numpy as np

from engine.session import FRAME_BYTES
from gateway.bench.transport_harness import (
    DRAIN_TIMEOUT_S,
    PCM,
    PEER_MAX_S,
    PEER_MODULE,
    START_TIMEOUT_S,
    ChildProcess,
    Receiver,
    cpu_ns,
    drive,
    wait_for,
)
from gateway.bench.transport_result import Result, result_of

POLL_SLEEP_S = 0.001

_HDR_WORDS = 64  # int64; each index on its own 64-byte cache line
_FWD_HEAD, _FWD_TAIL, _BACK_HEAD, _BACK_TAIL, _READY, _STOP = (8 * i for i in range(6))
_SLOT = struct.Struct("<qi4x")  # t0 ns, session; the 640 bytes of PCM follow
_SLOT_BYTES = _SLOT.size + FRAME_BYTES
_RING_SLOTS = 1024
_FWD_BASE = _HDR_WORDS * 8
_BACK_BASE = _FWD_BASE + _RING_SLOTS * _SLOT_BYTES
_SHM_BYTES = _BACK_BASE + _RING_SLOTS * _SLOT_BYTES


class _Ring:
    """One direction, one side. Relies on x86 keeping stores in order (slot, then head);
    ARM would need a barrier between them."""

    def __init__(self, buf: memoryview, hdr: np.ndarray, base: int, head_at: int, tail_at: int) -> None:
        self.buf, self.hdr, self.base = buf, hdr, base
        self.head_at, self.tail_at = head_at, tail_at
        self.head, self.tail = int(hdr[head_at]), int(hdr[tail_at])  # this side's own index

    def put(self, t_ns: int, session: int, pcm: bytes) -> bool:
        if self.head - int(self.hdr[self.tail_at]) >= _RING_SLOTS:
            return False
        off = self.base + (self.head % _RING_SLOTS) * _SLOT_BYTES
        _SLOT.pack_into(self.buf, off, t_ns, session)
        self.buf[off + _SLOT.size : off + _SLOT_BYTES] = pcm
        self.head += 1
        self.hdr[self.head_at] = self.head
        return True

    def get(self) -> tuple[int, int, bytes] | None:
        if self.tail == int(self.hdr[self.head_at]):
            return None
        off = self.base + (self.tail % _RING_SLOTS) * _SLOT_BYTES
        t_ns, session = _SLOT.unpack_from(self.buf, off)
        pcm = bytes(self.buf[off + _SLOT.size : off + _SLOT_BYTES])
        self.tail += 1
        self.hdr[self.tail_at] = self.tail
        return t_ns, session, pcm


class _Channel:
    """Both rings over one shared-memory block; close() drops the numpy view before the block."""

    def __init__(self, shm: SharedMemory) -> None:
        self.shm = shm
        self.hdr = np.ndarray((_HDR_WORDS,), np.int64, shm.buf)
        self.fwd = _Ring(shm.buf, self.hdr, _FWD_BASE, _FWD_HEAD, _FWD_TAIL)
        self.back = _Ring(shm.buf, self.hdr, _BACK_BASE, _BACK_HEAD, _BACK_TAIL)

    def close(self) -> None:
        del self.fwd, self.back, self.hdr
        self.shm.close()


class _ShmReceiver(Receiver):
    def __init__(self, ring: _Ring, poll: str) -> None:
        super().__init__()
        self.ring: _Ring | None = ring  # None once done: it holds a view of the shared block
        self.poll = poll
        self.halt = threading.Event()

    def run(self) -> None:
        c0 = time.thread_time_ns()
        ring = self.ring
        assert ring is not None
        while not self.halt.is_set():
            item = ring.get()
            if item is not None:
                self.rtts_ns.append(time.perf_counter_ns() - item[0])
                self.count += 1
            elif self.poll == "busy":
                os.sched_yield()  # drops the GIL, or the clock thread would wait up to 5 ms for it
            else:
                time.sleep(POLL_SLEEP_S)
        self.cpu_ns = time.thread_time_ns() - c0


def run_shm(tmp: Path, poll: str, sessions: int, mode: str, amount: int, quick: bool) -> Result:
    echo = mode == "paced"
    shm = SharedMemory(create=True, size=_SHM_BYTES)
    chan = _Channel(shm)
    peer: ChildProcess | None = None
    receiver: _ShmReceiver | None = None
    try:
        args = ["-m", PEER_MODULE, "peer-shm", shm.name, poll, "echo" if echo else "oneway"]
        peer = started = ChildProcess(args, tmp / "peer.log")
        wait_for(lambda: bool(chan.hdr[_READY]) or started.proc.poll() is not None, START_TIMEOUT_S, "the shm peer")
        peer.check_alive()
        if echo:
            receiver = _ShmReceiver(chan.back, poll)
            receiver.start()

        def send(i: int, t0: int) -> bool:
            return chan.fwd.put(t0, i, PCM)

        cpu0 = cpu_ns(peer.pid)
        stats = drive(send, lambda _: time.sleep(0.0001), sessions, mode, amount, quick)
        if receiver is not None:
            receiver.wait_for(stats.sent)
        else:
            wait_for(lambda: int(chan.hdr[_FWD_TAIL]) >= chan.fwd.head, DRAIN_TIMEOUT_S, "the shm peer to drain")
        cpu1 = cpu_ns(peer.pid)  # a busy poller never idles: its CPU up to the last frame counts
        done = time.perf_counter()
        peer.check_alive()
    finally:
        chan.hdr[_STOP] = 1
        if receiver is not None:
            receiver.halt.set()
            if receiver.ident is not None:
                receiver.join(timeout=2)
            receiver.ring = None
        if peer is not None:
            peer.close()
        chan.close()
        shm.unlink()
    return result_of(f"shm-{poll}", mode, sessions, stats, cpu1 - cpu0, done, receiver)


def peer_shm(name: str, poll: str, echo: bool) -> int:
    shm = SharedMemory(name=name)
    resource_tracker.unregister(shm._name, "shared_memory")  # type: ignore[attr-defined]  # the creator unlinks it
    chan = _Channel(shm)
    try:
        chan.hdr[_READY] = 1
        _consume(chan, poll, echo)
    finally:
        chan.close()
    return 0


def _consume(chan: _Channel, poll: str, echo: bool) -> None:
    parent, deadline = os.getppid(), time.monotonic() + PEER_MAX_S
    empty = 0
    while True:
        item = chan.fwd.get()
        if item is not None:
            if echo:
                chan.back.put(*item)
            continue
        empty += 1
        if poll == "sleep":
            time.sleep(POLL_SLEEP_S)
        elif empty % 1024:
            continue  # busy: check for the end only now and then
        if chan.hdr[_STOP] or os.getppid() != parent or time.monotonic() > deadline:
            return
