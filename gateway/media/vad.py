"""Voice activity detection on 16 kHz 20 ms frames.

An energy detector with hysteresis: speech-start after `start_ms` of frames above the
threshold, speech-stop after `stop_ms` below it. It is the first stage of the detector and
cheap enough for the clock thread. The default detector is gateway/media/detector.py's
(this energy gate in front of Silero, after the echo canceller), with the same interface:
`update(frame, t) -> VadEdge | None`; this one remains as `[media] vad = "energy"` and as the
fallback when the Silero model fails.
"""

from __future__ import annotations

import enum

import numpy as np

from engine.session import FRAME_MS


class VadEdge(enum.Enum):
    START = 1
    STOP = 2


def frame_power(frame: np.ndarray) -> float:
    """Mean-square power of an int16 frame relative to full scale (1.0 = a full-scale square wave)."""
    x = frame.astype(np.float32)
    return float(np.dot(x, x)) / max(1, x.size) / (32768.0 * 32768.0)


def frame_dbfs(frame: np.ndarray) -> float:
    """Level of an int16 frame in dB relative to full scale (a full-scale sine is -3 dBFS)."""
    return 10.0 * np.log10(frame_power(frame) + 1e-12)


class EnergyVad:
    def __init__(self, threshold_dbfs: float, start_ms: int, stop_ms: int) -> None:
        self.threshold_dbfs = threshold_dbfs
        self._start_frames = max(1, start_ms // FRAME_MS)
        self._stop_frames = max(1, stop_ms // FRAME_MS)
        self._run = 0  # consecutive frames disagreeing with the current state
        self.in_speech = False
        self.level_dbfs = -120.0

    def update(self, frame: np.ndarray, t: float = 0.0, start_floor_dbfs: float = -120.0) -> VadEdge | None:
        self.level_dbfs = frame_dbfs(frame)
        gate = self.threshold_dbfs if self.in_speech else max(self.threshold_dbfs, start_floor_dbfs)
        voiced = self.level_dbfs >= gate
        if voiced == self.in_speech:
            self._run = 0
            return None
        self._run += 1
        if self.in_speech and self._run >= self._stop_frames:
            self.in_speech, self._run = False, 0
            return VadEdge.STOP
        if not self.in_speech and self._run >= self._start_frames:
            self.in_speech, self._run = True, 0
            return VadEdge.START
        return None

    def reset(self) -> None:
        self.in_speech, self._run = False, 0
