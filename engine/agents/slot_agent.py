"""What the batched-model agents (model_agent.py, moshi_agent.py) share: a call slot whose
reply frames stream out through take_audio() from the controller's start_reply() until the
model says the reply is over (past `min_reply_ms`) or `max_reply_ms` is reached; the
dialplan's greeting; the transfer digit; the barge-ins it was told about."""

from __future__ import annotations

import numpy as np

from engine.agents.base import AgentAction
from engine.agents.prompts import load_prompt
from engine.session import CommandKind

FRAME_MS = 20  # the session's frames, which the reply is counted in


class SlotAgent:
    """A streaming agent's reply bookkeeping; a subclass reads its model's output in
    `_collect()` and hands each step's frames to `_reply_frames()`."""

    streaming = True

    def __init__(self, settings: dict[str, object], min_reply_ms: int, max_reply_ms: int) -> None:
        self._greeting = str(settings.get("greeting", ""))
        self._transfer_digit = str(settings.get("transfer_digit", ""))
        self._transfer_target = str(settings.get("transfer_target", ""))
        self.min_reply_ms, self.max_reply_ms = min_reply_ms, max_reply_ms
        self._replying = False
        self._done = False
        self._frames: list[bytes] = []
        self._made_ms = 0
        self.interruptions: list[tuple[int, int]] = []

    # -- the Agent protocol ------------------------------------------------------------------------
    def greeting(self) -> np.ndarray | None:
        return load_prompt(self._greeting)

    def respond(self, caller_turn: np.ndarray) -> np.ndarray | None:
        return None  # replies stream through take_audio()

    def on_dtmf(self, digit: str, duration_ms: int) -> np.ndarray | AgentAction | None:
        if digit == self._transfer_digit and self._transfer_target:
            return AgentAction(CommandKind.TRANSFER, self._transfer_target)
        self._on_digit(digit)
        return None

    def on_interrupted(self, utterance: int, heard_ms: int) -> None:
        self.interruptions.append((utterance, heard_ms))
        self._on_cut_off()

    # -- the StreamingAgent protocol's reply ------------------------------------------------------
    def start_reply(self, t: float, turn: np.ndarray | None = None) -> None:
        self._collect()  # what was made before the reply is not part of it
        self._replying, self._done, self._frames, self._made_ms = True, False, [], 0
        self._set_speaking(True)

    def take_audio(self) -> tuple[list[bytes], bool]:
        self._collect()
        frames, self._frames = self._frames, []
        return frames, self._done

    def reply_action(self) -> AgentAction | None:
        return None

    def stop_reply(self) -> None:
        self._replying, self._done, self._frames = False, True, []
        self._set_speaking(False)

    def _reply_frames(self, frames: list[bytes], over: bool) -> None:
        """One model step's frames, kept while replying; `over`: the model's reply-over signal."""
        if not self._replying:
            return
        self._frames += frames
        self._made_ms += FRAME_MS * len(frames)
        if self._made_ms >= self.max_reply_ms or (self._made_ms >= self.min_reply_ms and over):
            self._replying, self._done = False, True
            self._set_speaking(False)

    # -- what a model adds ------------------------------------------------------------------------
    def _collect(self) -> None:
        """Take the model's output for this slot; its frames go to _reply_frames()."""
        raise NotImplementedError

    def _set_speaking(self, speaking: bool) -> None:
        """The reply started or ended (a model that conditions on it is told here)."""

    def _on_digit(self, digit: str) -> None:
        """A DTMF digit other than the transfer digit."""

    def _on_cut_off(self) -> None:
        """The caller barged in and the reply was cut off."""
