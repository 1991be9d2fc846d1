"""Acoustic/line echo cancellation per call: WebRTC AEC3 through livekit's AudioProcessingModule.

The far-end reference is exactly the frame the call hands to the RTP sender, at that moment
(silence included); the near-end is the jitter-buffered inbound frame. AEC3 finds the bulk
delay itself (no hint needed, 20-500 ms measured in `talkover bench aec`).

The native module takes whole multiples of 10 ms only, and any other length aborts the whole
process inside the library (a Rust panic, SIGABRT). Every call here checks the length first
and raises `FrameLengthError` instead. A 20 ms frame goes through in one call (livekit cuts
it into AEC3's 10 ms blocks itself: output identical bit for bit to two 10 ms calls,
measured; one FFI round trip per frame instead of two saves ~12 % of the canceller's CPU),
in place in a buffer kept per frame length (no allocation per frame besides the output).
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
        cancel_echo: bool = True,
    ) -> None:
        """`cancel_echo=False`: the same module without AEC3 (noise suppression, gain and the
        high-pass filter only, ~33 µs a frame instead of ~135 µs), for a line known to bring
        none of the agent's audio back."""
        if rate not in SUPPORTED_RATES:
            raise ValueError(f"echo canceller sample rate must be one of {SUPPORTED_RATES}, not {rate}")
        self.rate = rate
        self.block_bytes = rate // 100 * 2  # 10 ms of int16 mono
        self._apm = rtc.AudioProcessingModule(
            echo_cancellation=cancel_echo,
            noise_suppression=noise_suppression,
            high_pass_filter=high_pass,
            auto_gain_control=auto_gain,
        )
        self._frames: dict[int, tuple[bytearray, rtc.AudioFrame, bytearray, rtc.AudioFrame]] = {}
        self.far_blocks = 0
        self.near_blocks = 0

    def _buffers(self, size: int) -> tuple[bytearray, rtc.AudioFrame, bytearray, rtc.AudioFrame]:
        """(far buffer, far frame, near buffer, near frame) for `size` bytes, made once per length."""
        found = self._frames.get(size)
        if found is None:
            samples = size // 2
            far, near = bytearray(size), bytearray(size)
            found = (far, rtc.AudioFrame(far, self.rate, 1, samples), near, rtc.AudioFrame(near, self.rate, 1, samples))
            if len(self._frames) < 8:  # a chain only ever uses one length; never grow without bound
                self._frames[size] = found
        return found

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
        blocks = self.check(pcm)
        buf, frame, _, _ = self._buffers(len(pcm))
        buf[:] = pcm
        self._apm.process_reverse_stream(frame)
        self.far_blocks += blocks

    def near(self, pcm: bytes | bytearray | memoryview) -> bytes:
        """Cancel the echo in an inbound frame; returns the cleaned frame (same length)."""
        blocks = self.check(pcm)
        _, _, buf, frame = self._buffers(len(pcm))
        buf[:] = pcm
        self._apm.process_stream(frame)
        self.near_blocks += blocks
        return bytes(buf)
