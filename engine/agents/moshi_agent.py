"""The Moshi agent: a call slot of the batched Moshi/Mimi model (engine/model/moshi_adapter.py).

Moshi is full duplex: it hears every caller frame and produces audio every model frame, deciding
itself when to talk. The turn controller still owns the floor, so this agent maps Moshi onto the
streaming-agent protocol: the caller's turn is over (the model's signal) once Moshi's text stream
carries words; a reply is the audio Moshi makes from the controller's start_reply() on, and it
ends after `reply_end_quiet_ms` without words (past `min_reply_ms`) or at `max_reply_ms`. Hold
freezes the row. Moshi has no event inputs: a barge-in reaches it as the caller's audio, which
it hears anyway; DTMF only triggers the dialplan's transfer.
"""

from __future__ import annotations

import numpy as np

from engine.agents.base import AgentAction
from engine.agents.prompts import load_prompt
from engine.model.moshi_adapter import FRAME_MS, MoshiBatch
from engine.session import CommandKind

MIN_REPLY_MS = 800
MAX_REPLY_MS = 8000
REPLY_END_QUIET_MS = 640  # Moshi's text stream silent this long ends a reply


def _setting(settings: dict[str, object], key: str, default: int) -> int:
    value = settings.get(key, default)
    return int(value) if isinstance(value, (int, float, str)) else default


class MoshiAgent:
    streaming = True

    def __init__(self, settings: dict[str, object], batch: MoshiBatch, slot: int) -> None:
        self.batch, self.slot = batch, slot
        self._greeting = str(settings.get("greeting", ""))
        self._transfer_digit = str(settings.get("transfer_digit", ""))
        self._transfer_target = str(settings.get("transfer_target", ""))
        self.min_reply_ms = _setting(settings, "min_reply_ms", MIN_REPLY_MS)
        self.max_reply_ms = _setting(settings, "max_reply_ms", MAX_REPLY_MS)
        self.quiet_steps = max(1, _setting(settings, "reply_end_quiet_ms", REPLY_END_QUIET_MS) // FRAME_MS)
        batch.join(slot)
        self._replying = False
        self._done = False
        self._frames: list[bytes] = []
        self._made_ms = 0
        self._words = False  # Moshi's last text token was a word piece
        self._quiet = 0  # steps since its last word
        self.interruptions: list[tuple[int, int]] = []

    # -- the Agent protocol ------------------------------------------------------------------------
    def greeting(self) -> np.ndarray | None:
        return load_prompt(self._greeting)

    def respond(self, caller_turn: np.ndarray) -> np.ndarray | None:
        return None  # replies stream through take_audio()

    def on_dtmf(self, digit: str, duration_ms: int) -> np.ndarray | AgentAction | None:
        if digit == self._transfer_digit and self._transfer_target:
            return AgentAction(CommandKind.TRANSFER, self._transfer_target)
        return None

    def on_interrupted(self, utterance: int, heard_ms: int) -> None:
        self.interruptions.append((utterance, heard_ms))

    def close(self) -> None:
        self.batch.leave(self.slot)

    # -- the StreamingAgent protocol ---------------------------------------------------------------
    def hear(self, t: float, pcm: bytes) -> None:
        self.batch.push(self.slot, pcm)
        self._collect()

    def set_held(self, held: bool) -> None:
        self.batch.freeze(self.slot, held)

    def caller_turn_over(self) -> bool:
        self._collect()
        return self._words

    def start_reply(self, t: float) -> None:
        self._collect()  # what Moshi made before the reply is not part of it
        self._replying, self._done, self._frames, self._made_ms = True, False, [], 0

    def take_audio(self) -> tuple[list[bytes], bool]:
        self._collect()
        frames, self._frames = self._frames, []
        return frames, self._done

    def stop_reply(self) -> None:
        self._replying, self._done, self._frames = False, True, []

    def _collect(self) -> None:
        for out in self.batch.take(self.slot):
            self._words = out.words
            self._quiet = 0 if out.words else self._quiet + 1
            if not self._replying:
                continue
            self._frames += out.frames
            self._made_ms += 20 * len(out.frames)
            if self._made_ms >= self.max_reply_ms or (
                self._made_ms >= self.min_reply_ms and self._quiet >= self.quiet_steps
            ):
                self._replying, self._done = False, True
