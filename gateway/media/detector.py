"""Speech detection after the echo canceller: an energy gate in front of Silero, with hysteresis.

A frame is voiced when its level reaches `threshold_dbfs` (cheap; rejects line noise and the
faint residual echo the canceller leaves) and Silero's latest probability reaches
`start_probability` (`stop_probability` once in speech). Speech-start comes after `start_ms`
of voiced frames, speech-stop after `stop_ms` of unvoiced ones. Silero decides once per 32 ms
chunk; a loud frame that is not yet voiced gets a look at the newest 32 ms (SileroVad.peek)
rather than waiting for the next chunk boundary, so a start comes ~40-80 ms after the true
onset (measured by `talkover bench aec`).

Same interface as gateway/media/vad.py's EnergyVad: `update(frame) -> VadEdge | None`,
`in_speech`, `level_dbfs`, `reset()`; `onset_t` is the time of the frame that started speech.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.session import FRAME_MS
from gateway.media.silero import SileroModel, SileroVad
from gateway.media.vad import VadEdge, frame_dbfs


@dataclass
class DetectorSettings:
    threshold_dbfs: float = -50.0
    start_probability: float = 0.5
    stop_probability: float = 0.35
    start_ms: int = 20
    stop_ms: int = 500


class SpeechDetector:
    def __init__(self, settings: DetectorSettings, model: SileroModel | None = None, rate: int = 16000) -> None:
        self.settings = settings
        self.silero = SileroVad(model, rate)
        self._start_frames = max(1, settings.start_ms // FRAME_MS)
        self._stop_frames = max(1, settings.stop_ms // FRAME_MS)
        self._run = 0  # consecutive frames disagreeing with the current state
        self.in_speech = False
        self.level_dbfs = -120.0
        self.onset_t = 0.0
        self._t = 0.0
        self._gate = settings.threshold_dbfs

    @property
    def probability(self) -> float:
        return self.silero.probability

    def update(self, frame: np.ndarray, t: float = 0.0, start_floor_dbfs: float = -120.0) -> VadEdge | None:
        """`start_floor_dbfs`: a higher gate for starting speech (the echo canceller's warm-up)."""
        self.hear(frame, t, start_floor_dbfs)
        return self.decide(self.silero.peek() if self.needs_peek() else None)

    # The same in steps, for a batch (gateway/media/vad_batch.py): hear → the batch runs the
    # chunks → needs_peek → the batch runs the peeks → decide.
    def hear(self, frame: np.ndarray, t: float, start_floor_dbfs: float = -120.0) -> None:
        self.level_dbfs = frame_dbfs(frame)
        self._t = t
        s = self.settings
        self._gate = s.threshold_dbfs if self.in_speech else max(s.threshold_dbfs, start_floor_dbfs)
        self.silero.push(frame)

    def _needed(self) -> float:
        return self.settings.stop_probability if self.in_speech else self.settings.start_probability

    def needs_peek(self) -> bool:
        """A loud frame not yet voiced: an onset need not wait for the next chunk boundary."""
        return (not self.in_speech and self.level_dbfs >= self._gate and self.silero.probability < self._needed()
                and self.silero.has_pending)

    def decide(self, peeked: float | None) -> VadEdge | None:
        needed = self._needed()
        voiced = self.level_dbfs >= self._gate and self.silero.probability >= needed
        if not voiced and peeked is not None:
            voiced = peeked >= needed
        if voiced == self.in_speech:
            self._run = 0
            return None
        self._run += 1
        if self.in_speech and self._run >= self._stop_frames:
            self.in_speech, self._run = False, 0
            return VadEdge.STOP
        if not self.in_speech and self._run >= self._start_frames:
            self.in_speech, self._run, self.onset_t = True, 0, self._t
            return VadEdge.START
        return None

    def reset(self) -> None:
        self.in_speech, self._run = False, 0
        self.silero.reset()
