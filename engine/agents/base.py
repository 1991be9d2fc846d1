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


class Agent(Protocol):
    def greeting(self) -> np.ndarray | None: ...

    def respond(self, caller_turn: np.ndarray) -> np.ndarray | None:
        """The reply to a finished caller turn, or None to stay silent."""

    def on_dtmf(self, digit: str, duration_ms: int) -> np.ndarray | AgentAction | None: ...

    def on_interrupted(self, utterance: int, heard_ms: int) -> None:
        """The caller cut the agent off after hearing `heard_ms` of `utterance`."""

    def close(self) -> None: ...
