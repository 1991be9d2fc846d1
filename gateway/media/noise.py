"""Noise suppression and gain after the echo canceller, when not done by the canceller's own APM.

`MediaConfig.noise` picks the stage: "apm" (the AEC's AudioProcessingModule suppresses noise in
the same pass: no extra stage, and it also takes residual echo down), "webrtc" (the separate
webrtc-noise-gain module: NS + optional AGC, 16 kHz 10 ms blocks only) or "off". Gain control
is off by default: it raises whatever is left after the canceller, residual echo included
(`talkover bench aec` prints the measurement behind this choice).
"""

from __future__ import annotations

from webrtc_noise_gain import AudioProcessor

from gateway.media.aec import FrameLengthError

NOISE_STAGES = ("apm", "webrtc", "off")
RATE = 16000
BLOCK_BYTES = RATE // 100 * 2


class NoiseGain:
    """webrtc-noise-gain per call: `level` 0-4 (0 off), `auto_gain_dbfs` 0 (off) to 31."""

    def __init__(self, level: int = 2, auto_gain_dbfs: int = 0) -> None:
        if not 0 <= level <= 4 or not 0 <= auto_gain_dbfs <= 31:
            raise ValueError("noise suppression level must be 0-4 and auto gain 0-31 dBFS")
        self._proc = AudioProcessor(auto_gain_dbfs, level)

    def process(self, pcm: bytes) -> bytes:
        size = len(pcm)
        if size == 0 or size % BLOCK_BYTES:
            raise FrameLengthError(f"{size} bytes is not a multiple of 10 ms at 16 kHz ({BLOCK_BYTES} bytes)")
        if size == BLOCK_BYTES:
            return bytes(self._proc.Process10ms(pcm).audio)
        return b"".join(
            bytes(self._proc.Process10ms(pcm[i : i + BLOCK_BYTES]).audio) for i in range(0, size, BLOCK_BYTES)
        )
