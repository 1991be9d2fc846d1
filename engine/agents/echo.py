"""The echo-test agent: greets, then plays back each caller turn, like a PBX echo test.

It is the default agent until the trained model lands, and it exercises everything a real
agent needs from the gateway: greeting, turn ends, barge-in, hold, DTMF and transfer.
"""

from __future__ import annotations

import numpy as np

from engine.agents.base import AgentAction
from engine.agents.prompts import dtmf_tone, load_prompt
from engine.session import SAMPLE_RATE, CommandKind

MAX_ECHO_S = 15


class EchoAgent:
    def __init__(self, settings: dict[str, object]) -> None:
        self._greeting = str(settings.get("greeting", "chime"))
        self._transfer_digit = str(settings.get("transfer_digit", ""))
        self._transfer_target = str(settings.get("transfer_target", ""))
        self.interruptions: list[tuple[int, int]] = []

    def greeting(self) -> np.ndarray | None:
        return load_prompt(self._greeting)

    def respond(self, caller_turn: np.ndarray) -> np.ndarray | None:
        return caller_turn[: MAX_ECHO_S * SAMPLE_RATE] if caller_turn.size else None

    def on_dtmf(self, digit: str, duration_ms: int) -> np.ndarray | AgentAction | None:
        if digit == self._transfer_digit and self._transfer_target:
            return AgentAction(CommandKind.TRANSFER, self._transfer_target)
        return dtmf_tone(digit)

    def on_interrupted(self, utterance: int, heard_ms: int) -> None:
        self.interruptions.append((utterance, heard_ms))

    def close(self) -> None:
        pass


class SilentAgent(EchoAgent):
    """Listens and never speaks: for load tests of the media path alone."""

    def greeting(self) -> np.ndarray | None:
        return None

    def respond(self, caller_turn: np.ndarray) -> np.ndarray | None:
        return None


def make_agent(settings: dict[str, object]) -> EchoAgent:
    return SilentAgent(settings) if settings.get("agent") == "silent" else EchoAgent(settings)
