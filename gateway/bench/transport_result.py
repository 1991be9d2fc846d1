"""What one `talkover bench transport` run measured, and the transports it compares."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gateway.bench.transport_harness import Receiver, SendStats

TRANSPORTS = ("engine-silent", "engine-echo", "sock-raw", "shm-busy", "shm-sleep")
FAST_TRANSPORTS = ("engine-silent", "sock-raw", "shm-busy", "shm-sleep")


@dataclass
class Result:
    transport: str
    mode: str  # paced | fast
    sessions: int
    frames: int  # frames the transport accepted
    send_cpu_us: float  # sending thread CPU per frame, encode + send
    send_p99_us: float  # wall time of one send, 99th percentile
    peer_cpu_us: float  # engine / peer process CPU per frame, polling included
    recv_cpu_us: float | None  # worker receive thread CPU per reply, polling included
    rtt_p50_ms: float | None
    rtt_p99_ms: float | None
    dropped: int  # paced: frames refused (buffer full); fast: times the sender waited for room
    replies: int
    wall_s: float  # first send until the receiving side had handled the last frame

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def total_cpu_us(self) -> float:
        """Both ends of the transport, per frame."""
        return self.send_cpu_us + self.peer_cpu_us + (self.recv_cpu_us or 0.0)


def result_of(
    name: str, mode: str, sessions: int, st: SendStats, peer_cpu_ns: int, done: float, receiver: Receiver | None
) -> Result:
    """`done`: perf_counter when the receiving side had handled every frame (fast mode throughput)."""
    n = max(st.sent, 1)
    rtts = np.asarray(receiver.rtts_ns if receiver else [], dtype=np.float64) / 1e6
    return Result(
        transport=name,
        mode=mode,
        sessions=sessions,
        frames=st.sent,
        send_cpu_us=st.cpu_ns / n / 1e3,
        send_p99_us=float(np.percentile(st.walls_ns, 99)) / 1e3 if st.walls_ns else 0.0,
        peer_cpu_us=peer_cpu_ns / n / 1e3,
        recv_cpu_us=receiver.cpu_ns / max(receiver.count, 1) / 1e3 if receiver else None,
        rtt_p50_ms=float(np.percentile(rtts, 50)) if rtts.size else None,
        rtt_p99_ms=float(np.percentile(rtts, 99)) if rtts.size else None,
        dropped=st.dropped,
        replies=receiver.count if receiver else 0,
        wall_s=max(st.end, done) - st.start,
    )
