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

from engine.agents.base import AgentAction
from engine.agents.prompts import load_prompt
from engine.batch.scheduler import BatchScheduler
from engine.model.model import DTMF_EVENTS, EVENT_CUT_OFF, EVENT_RESUMED
from engine.session import CommandKind

MIN_REPLY_MS = 2500  # an untrained model says "done" at random: replies last at least this
MAX_REPLY_MS = 8000
SIGNAL_THRESHOLD = 0.5


class ModelAgent:
    streaming = True

    def __init__(self, settings: dict[str, object], scheduler: BatchScheduler, slot: int) -> None:
        self.sched, self.slot = scheduler, slot
        self._greeting = str(settings.get("greeting", ""))
        self._transfer_digit = str(settings.get("transfer_digit", ""))
        self._transfer_target = str(settings.get("transfer_target", ""))
        self.min_reply_ms = int(settings.get("min_reply_ms", MIN_REPLY_MS))  # type: ignore[call-overload]
        self.max_reply_ms = int(settings.get("max_reply_ms", MAX_REPLY_MS))  # type: ignore[call-overload]
        self.threshold = float(settings.get("signal_threshold", SIGNAL_THRESHOLD))  # type: ignore[arg-type]
        speaker = None
        if settings.get("speaker_prompt"):
            prompt = load_prompt(str(Path(str(settings["speaker_prompt"]))))
            if prompt is not None:
                speaker = scheduler.model.speaker_from_prompt(torch.from_numpy(prompt.astype(np.float32) / 32768))
        scheduler.join(slot, speaker=speaker)
        self._replying = False
        self._done = False
        self._frames: list[bytes] = []
        self._made_ms = 0
        self._turn_over_p = 0.0
        self.interruptions: list[tuple[int, int]] = []

    # -- the Agent protocol ------------------------------------------------------------------------
    def greeting(self) -> np.ndarray | None:
        return load_prompt(self._greeting)

    def respond(self, caller_turn: np.ndarray) -> np.ndarray | None:
        return None  # replies stream through take_audio()

    def on_dtmf(self, digit: str, duration_ms: int) -> np.ndarray | AgentAction | None:
        if digit == self._transfer_digit and self._transfer_target:
            return AgentAction(CommandKind.TRANSFER, self._transfer_target)
        if digit in DTMF_EVENTS:
            self.sched.event(self.slot, DTMF_EVENTS[digit])
        return None

    def on_interrupted(self, utterance: int, heard_ms: int) -> None:
        self.interruptions.append((utterance, heard_ms))
        self.sched.event(self.slot, EVENT_CUT_OFF)

    def close(self) -> None:
        self.sched.leave(self.slot)

    # -- the StreamingAgent protocol ---------------------------------------------------------------
    def hear(self, t: float, pcm: bytes) -> None:
        self.sched.push(self.slot, pcm)
        self._collect()

    def set_held(self, held: bool) -> None:
        self.sched.freeze(self.slot, held)
        if not held:
            self.sched.event(self.slot, EVENT_RESUMED)

    def caller_turn_over(self) -> bool:
        self._collect()
        return self._turn_over_p >= self.threshold

    def start_reply(self, t: float) -> None:
        self._collect()  # what was made before the reply is not part of it
        self._replying, self._done, self._frames, self._made_ms = True, False, [], 0
        self.sched.set_speaking(self.slot, True)

    def take_audio(self) -> tuple[list[bytes], bool]:
        self._collect()
        frames, self._frames = self._frames, []
        return frames, self._done

    def stop_reply(self) -> None:
        self._replying, self._done, self._frames = False, True, []
        self.sched.set_speaking(self.slot, False)

    def _collect(self) -> None:
        for out in self.sched.take(self.slot):
            self._turn_over_p = out.caller_turn_over
            if not self._replying:
                continue
            self._frames += out.frames
            self._made_ms += 20 * len(out.frames)
            if self._made_ms >= self.max_reply_ms or (
                self._made_ms >= self.min_reply_ms and out.reply_over >= self.threshold
            ):
                self._replying, self._done = False, True
                self.sched.set_speaking(self.slot, False)
