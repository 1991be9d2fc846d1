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

from engine.agents.slot_agent import SlotAgent
from engine.model.moshi_adapter import FRAME_MS, MoshiBatch

MIN_REPLY_MS = 800
MAX_REPLY_MS = 8000
REPLY_END_QUIET_MS = 640  # Moshi's text stream silent this long ends a reply


def _setting(settings: dict[str, object], key: str, default: int) -> int:
    value = settings.get(key, default)
    return int(value) if isinstance(value, (int, float, str)) else default


class MoshiAgent(SlotAgent):
    def __init__(self, settings: dict[str, object], batch: MoshiBatch, slot: int) -> None:
        super().__init__(
            settings,
            min_reply_ms=_setting(settings, "min_reply_ms", MIN_REPLY_MS),
            max_reply_ms=_setting(settings, "max_reply_ms", MAX_REPLY_MS),
        )
        self.batch, self.slot = batch, slot
        self.quiet_steps = max(1, _setting(settings, "reply_end_quiet_ms", REPLY_END_QUIET_MS) // FRAME_MS)
        batch.join(slot)
        self._words = False  # Moshi's last text token was a word piece
        self._quiet = 0  # steps since its last word

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

    # -- SlotAgent ---------------------------------------------------------------------------------
    def _collect(self) -> None:
        for out in self.batch.take(self.slot):
            self._words = out.words
            self._quiet = 0 if out.words else self._quiet + 1
            self._reply_frames(out.frames, self._quiet >= self.quiet_steps)
