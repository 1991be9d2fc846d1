"""Audio between aiortc and the per-call chain (16 kHz mono int16, 20 ms frames).

Inbound: decoded frames arrive at the codec's rate (Opus 48 kHz stereo, G.722 16 kHz,
G.711 8 kHz), whenever the network delivers them; they are mixed to mono, resampled with
soxr (gateway/media/resample.py) and cut into 20 ms frames that wait in a short FIFO until
the media clock takes one per tick. Outbound: the clock hands each tick's frame to
`AgentTrack`, whose recv() aiortc's sender awaits, so RTP leaves at the clock's pace. The
frames stay 16 kHz: aiortc's encoder converts them to the codec's rate itself.
"""

from __future__ import annotations

import asyncio
import fractions
from collections import deque

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from engine.session import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE
from gateway.media.resample import StreamResampler

TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
SILENCE = bytes(FRAME_BYTES)


class InboundAudio:
    """Caller audio waiting for the clock: a tiny jitter buffer of whole 20 ms frames."""

    def __init__(self, prefetch: int = 2, max_frames: int = 12) -> None:  # 12: the clock catches up 200 ms
        self._frames: deque[bytes] = deque()
        self._prefetch, self._max = prefetch, max_frames
        self._filling = True  # after a gap, wait for `prefetch` frames before taking again
        self._rest = np.zeros(0, np.int16)
        self._rs: StreamResampler | None = None
        self.gaps = 0  # ticks with nothing ready
        self.dropped = 0  # frames dropped because the FIFO was full (sender clock faster)
        self.frames = 0

    def feed(self, frame: AudioFrame) -> None:
        pcm = frame.to_ndarray().reshape(-1)
        channels = len(frame.layout.channels)
        if channels > 1:
            pcm = (pcm.reshape(-1, channels).astype(np.int32).sum(axis=1) // channels).astype(np.int16)
        if self._rs is None or self._rs.rate_in != frame.sample_rate:
            self._rs = StreamResampler(frame.sample_rate, SAMPLE_RATE)
        pcm = np.concatenate([self._rest, self._rs.process(pcm)])
        whole = pcm.size - pcm.size % FRAME_SAMPLES
        for i in range(0, whole, FRAME_SAMPLES):
            if len(self._frames) >= self._max:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(pcm[i : i + FRAME_SAMPLES].tobytes())
        self._rest = pcm[whole:]

    def pop(self) -> bytes | None:
        if self._filling and len(self._frames) < self._prefetch:
            self.gaps += 1
            return None
        self._filling = False
        if not self._frames:
            self._filling = True
            self.gaps += 1
            return None
        self.frames += 1
        return self._frames.popleft()

    def reset(self) -> None:
        self._frames.clear()
        self._filling = True


class AgentTrack(MediaStreamTrack):
    """The agent's side of the call as aiortc sees it: one frame per media-clock tick."""

    kind = "audio"

    def __init__(self, max_frames: int = 10) -> None:
        super().__init__()
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._max = max_frames
        self._pts = 0
        self.dropped = 0  # frames aiortc did not take in time (its sender stalled)

    def put(self, pcm: bytes) -> None:
        if self._queue.qsize() >= self._max:
            self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(pcm)

    def end(self) -> None:
        self._queue.put_nowait(None)
        self.stop()

    async def recv(self) -> AudioFrame:
        pcm = await self._queue.get()
        if pcm is None or self.readyState != "live":
            raise MediaStreamError
        frame = AudioFrame(format="s16", layout="mono", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate = SAMPLE_RATE
        frame.pts, frame.time_base = self._pts, TIME_BASE
        self._pts += FRAME_SAMPLES
        return frame
