"""The model agent: a call slot of the batched speech model (engine/batch), full duplex.

It pushes every caller frame into its scheduler slot and never steps the model itself: the
engine's tick does that for all slots at once. While the turn controller lets it reply, its
slot is marked speaking and the vocoded frames become the reply; the reply ends on the
model's reply-over signal (after `min_reply_ms`) or at `max_reply_ms`. The controller asks it
whether the caller's turn is over (the model's signal), and tells it about hold, DTMF and
where the caller cut it off, which reach the model as event tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.agents.prompts import load_prompt
from engine.agents.slot_agent import SlotAgent
from engine.batch.scheduler import BatchScheduler
from engine.model.model import DTMF_EVENTS, EVENT_CUT_OFF, EVENT_RESUMED
from engine.model.pitch import semitones_to_ratio
from engine.turns.controller import TurnSettings, level_dbfs

MIN_REPLY_MS = 2500  # an untrained model says "done" at random: replies last at least this
MAX_REPLY_MS = 8000
SIGNAL_THRESHOLD = 0.5
VOICED_DBFS = TurnSettings.voiced_dbfs  # quieter is not the caller talking (the turn controller's rule)


class ModelAgent(SlotAgent):
    def __init__(self, settings: dict[str, object], scheduler: BatchScheduler, slot: int) -> None:
        super().__init__(
            settings,
            min_reply_ms=int(settings.get("min_reply_ms", MIN_REPLY_MS)),  # type: ignore[call-overload]
            max_reply_ms=int(settings.get("max_reply_ms", MAX_REPLY_MS)),  # type: ignore[call-overload]
        )
        self.sched, self.slot = scheduler, slot
        self.threshold = float(settings.get("signal_threshold", SIGNAL_THRESHOLD))  # type: ignore[arg-type]
        speaker = None
        if settings.get("speaker_prompt"):
            prompt = load_prompt(str(Path(str(settings["speaker_prompt"]))))
            if prompt is not None:
                speaker = scheduler.model.speaker_from_prompt(torch.from_numpy(prompt.astype(np.float32) / 32768))
        rate = float(settings.get("speaking_rate", 1.0))  # type: ignore[arg-type]
        pitch = semitones_to_ratio(float(settings.get("pitch_semitones", 0.0)))  # type: ignore[arg-type]
        scheduler.join(slot, speaker=speaker, prosody=(rate, pitch, 0.0, 0.0))
        self._turn_over_p = 0.0

    def close(self) -> None:
        self.sched.leave(self.slot)

    # -- the StreamingAgent protocol ---------------------------------------------------------------
    def hear(self, t: float, pcm: bytes) -> None:
        # While it speaks the LM hears the caller only above VOICED_DBFS: it was trained to fall
        # silent when talked over, and a line's residual echo of its own voice (-80 to -60 dBFS
        # after the canceller, measured on a SIP call) made it stop a second into its reply.
        if self._replying and level_dbfs(pcm) < VOICED_DBFS:
            pcm = bytes(len(pcm))
        self.sched.push(self.slot, pcm)
        self._collect()

    def set_held(self, held: bool) -> None:
        self.sched.freeze(self.slot, held)
        if not held:
            self.sched.event(self.slot, EVENT_RESUMED)

    def caller_turn_over(self) -> bool:
        self._collect()
        return self._turn_over_p >= self.threshold

    # -- SlotAgent ---------------------------------------------------------------------------------
    def _collect(self) -> None:
        for out in self.sched.take(self.slot):
            self._turn_over_p = out.caller_turn_over
            self._reply_frames(out.frames, out.reply_over >= self.threshold)

    def _set_speaking(self, speaking: bool) -> None:
        self.sched.set_speaking(self.slot, speaking)

    def _on_digit(self, digit: str) -> None:
        if digit in DTMF_EVENTS:
            self.sched.event(self.slot, DTMF_EVENTS[digit])

    def _on_cut_off(self) -> None:
        self.sched.event(self.slot, EVENT_CUT_OFF)
