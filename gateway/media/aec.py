"""Acoustic/line echo cancellation per call: WebRTC AEC3 through livekit's AudioProcessingModule.

The far-end reference is exactly the frame the call hands to the RTP sender, at that moment
(silence included); the near-end is the jitter-buffered inbound frame. AEC3 finds the bulk
delay itself (no hint needed, 20-500 ms measured in `talkover bench aec`).

The native module takes 10 ms frames only, and any other length aborts the whole process
inside the library (a Rust panic, SIGABRT). Every call here checks the length first and
raises `FrameLengthError` instead; the audio is then cut into 10 ms blocks and processed in
place in two preallocated buffers (no allocation per block besides the output).
"""

from __future__ import annotations

from livekit import rtc

SUPPORTED_RATES = (8000, 16000, 32000, 48000)


class FrameLengthError(ValueError):
    """The audio handed to the canceller is not a whole number of 10 ms blocks."""


class EchoCanceller:
    def __init__(
        self,
        rate: int = 16000,
        *,
        noise_suppression: bool = False,
        auto_gain: bool = False,
        high_pass: bool = True,
    ) -> None:
        if rate not in SUPPORTED_RATES:
            raise ValueError(f"echo canceller sample rate must be one of {SUPPORTED_RATES}, not {rate}")
        self.rate = rate
        self.block_bytes = rate // 100 * 2  # 10 ms of int16 mono
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=True,
            noise_suppression=noise_suppression,
            high_pass_filter=high_pass,
            auto_gain_control=auto_gain,
        )
        samples = rate // 100
        self._far_buf = bytearray(self.block_bytes)
        self._far = rtc.AudioFrame(self._far_buf, rate, 1, samples)
        self._near_buf = bytearray(self.block_bytes)
        self._near = rtc.AudioFrame(self._near_buf, rate, 1, samples)
        self.far_blocks = 0
        self.near_blocks = 0

    def check(self, pcm: bytes | bytearray | memoryview) -> int:
        """The number of 10 ms blocks in `pcm`; FrameLengthError unless that is a whole number >= 1."""
        size = len(pcm)
        if size == 0 or size % self.block_bytes:
            ms = size / (self.rate * 2) * 1000
            raise FrameLengthError(
                f"{size} bytes ({ms:g} ms at {self.rate} Hz) is not a multiple of 10 ms "
                f"({self.block_bytes} bytes of 16-bit mono)"
            )
        return size // self.block_bytes

    def far(self, pcm: bytes | bytearray | memoryview) -> None:
        """Feed the reference: what was just handed to the sender."""
        step = self.block_bytes
        for i in range(self.check(pcm)):
            self._far_buf[:] = pcm[i * step : (i + 1) * step]
            self._apm.process_reverse_stream(self._far)
        self.far_blocks += len(pcm) // step

    def near(self, pcm: bytes | bytearray | memoryview) -> bytes:
        """Cancel the echo in an inbound frame; returns the cleaned frame (same length)."""
        step = self.block_bytes
        blocks = self.check(pcm)
        if blocks == 1:
            self._near_buf[:] = pcm
            self._apm.process_stream(self._near)
            self.near_blocks += 1
            return bytes(self._near_buf)
        out = bytearray(len(pcm))
        for i in range(blocks):
            self._near_buf[:] = pcm[i * step : (i + 1) * step]
            self._apm.process_stream(self._near)
            out[i * step : (i + 1) * step] = self._near_buf
        self.near_blocks += blocks
        return bytes(out)
