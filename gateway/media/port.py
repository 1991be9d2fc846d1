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
from gateway.media.chain import CallMedia

_SILENCE = bytes(FRAME_BYTES)


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
        fmt = pj.MediaFormatAudio()
        fmt.type = pj.PJMEDIA_TYPE_AUDIO
        fmt.clockRate = SAMPLE_RATE
        fmt.channelCount = 1
        fmt.bitsPerSample = 16
        fmt.frameTimeUsec = FRAME_MS * 1000
        self.createPort(self.name, fmt)

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
