"""What the turn controller asks of an agent. Audio is 16 kHz mono int16 numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from engine.session import CommandKind


@dataclass(slots=True)
class AgentAction:
    """Something other than speech the agent wants done (transfer, hang up)."""

    kind: CommandKind
    target: str = ""
    reason: str = ""


@dataclass(slots=True)
class Reply:
    """Speech, then optionally an action once the caller has heard all of it (dropped if the
    caller cuts the speech off)."""

    audio: np.ndarray | None
    then: AgentAction | None = None


class PendingReply(Protocol):
    """A reply still being made off the engine's loop (e.g. a recognizer in another process).
    The turn controller polls it once per caller frame."""

    def poll(self) -> Reply | None:
        """None until the reply is ready."""


class Agent(Protocol):
    def greeting(self) -> np.ndarray | None: ...

    def respond(self, caller_turn: np.ndarray) -> np.ndarray | Reply | PendingReply | None:
        """The reply to a finished caller turn, or None to stay silent."""

    def on_dtmf(self, digit: str, duration_ms: int) -> np.ndarray | AgentAction | None: ...

    def on_interrupted(self, utterance: int, heard_ms: int) -> None:
        """The caller cut the agent off after hearing `heard_ms` of `utterance`."""

    def close(self) -> None: ...


class StreamingAgent(Agent, Protocol):
    """A frame-synchronous agent (a streaming model): it hears every caller frame and produces
    its reply a model frame at a time. The turn controller still decides who has the floor."""

    streaming: bool  # True: the controller uses the methods below instead of respond()

    def hear(self, t: float, pcm: bytes) -> None:
        """Every caller frame while the call is not on hold."""

    def set_held(self, held: bool) -> None: ...

    def caller_turn_over(self) -> bool:
        """The model's end-of-turn signal (combined with VAD silence by the controller)."""

    def start_reply(self, t: float, turn: np.ndarray | None = None) -> None:
        """The caller's turn ended (`turn`: its audio, 16 kHz int16, as the controller cut it):
        from now on the agent's output is its reply."""

    def take_audio(self) -> tuple[list[bytes], bool]:
        """20 ms reply frames made since the last call, and whether the reply is complete."""

    def reply_action(self) -> AgentAction | None:
        """Asked once a reply is complete: what to do when it has played (transfer, hang up)."""

    def stop_reply(self) -> None:
        """Generation stops (a committed barge-in)."""
