"""The frame I/O between pjsua2's conference bridge and a call's media chain.

One `FramePort` per call slot is created at start and reused for every call: creating and
destroying AudioMediaPorts per call crashed pjsua2 under churn (../shared/DESIGN.md).
Frames are read straight from the std::vector's memory (~2 µs) instead of `bytes(buf)`
(~145 µs): the SWIG object's `this` is the address of the vector, whose first word is
its data pointer.
"""

from __future__ import annotations

import ctypes

import pjsua2 as pj

from engine.session import FRAME_BYTES, FRAME_MS, SAMPLE_RATE
from engine.logs import get_logger
from gateway.media.chain import CallMedia
from gateway.media.vad_batch import SileroBatch

log = get_logger(component="media")

_SILENCE = bytes(FRAME_BYTES)


def bridge_format() -> pj.MediaFormatAudio:
    fmt = pj.MediaFormatAudio()
    fmt.type = pj.PJMEDIA_TYPE_AUDIO
    fmt.clockRate = SAMPLE_RATE
    fmt.channelCount = 1
    fmt.bitsPerSample = 16
    fmt.frameTimeUsec = FRAME_MS * 1000
    return fmt


def read_frame(frame: pj.MediaFrame) -> bytes:
    size = frame.size
    if size <= 0:
        return b""
    data_ptr = ctypes.c_void_p.from_address(int(frame.buf.this)).value
    return ctypes.string_at(data_ptr, size) if data_ptr else b""


class FramePort(pj.AudioMediaPort):  # type: ignore[misc]
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.media: CallMedia | None = None  # set while a call uses this port
        self._silence = pj.ByteVector(_SILENCE)
        self.late_frames = 0

    def create(self) -> None:
        self.createPort(self.name, bridge_format())

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:  # clock thread
        media = self.media
        if media is not None and frame.type == pj.PJMEDIA_FRAME_TYPE_AUDIO:
            media.inbound(read_frame(frame))

    def onFrameRequested(self, frame: pj.MediaFrame) -> None:  # clock thread
        media = self.media
        pcm = media.outbound() if media is not None else None
        frame.type = pj.PJMEDIA_FRAME_TYPE_AUDIO
        frame.buf = pj.ByteVector(pcm) if pcm is not None else self._silence
        frame.size = FRAME_BYTES


class TickEndPort(pj.AudioMediaPort):  # type: ignore[misc]
    """Created after every FramePort, so it holds the highest slot of the conference bridge, which
    calls its onFrameReceived after every other port's in a tick (even with nothing connected to
    it: the bridge sends such a port an empty frame each tick): the end of the tick, where the
    worker's Silero batch runs (gateway/media/vad_batch.py)."""

    def __init__(self, name: str, batch: SileroBatch) -> None:
        super().__init__()
        self.name = name
        self.batch: SileroBatch | None = batch
        self.failures = 0

    def create(self) -> None:
        self.createPort(self.name, bridge_format())

    def last_of(self, ports: list[FramePort]) -> bool:
        """Whether the bridge calls this port after all of `ports` in a tick."""
        return all(self.getPortId() > p.getPortId() for p in ports)

    def onFrameReceived(self, frame: pj.MediaFrame) -> None:  # clock thread, last port of the tick
        batch = self.batch
        if batch is None or not batch.waiting:
            return
        try:
            batch.end_tick()
        except Exception:  # noqa: BLE001 - nothing may escape into pjsua2's clock thread
            self.failures += 1
            if self.failures == 1:
                log.exception("the VAD batch failed at the end of a tick")
