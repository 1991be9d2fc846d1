"""A turn controller driven as a timeline: scripted gateway frames and events in, the
controller's actions (agent audio, commands) collected in order."""

from __future__ import annotations

from engine.session import FRAME_BYTES, AgentAudio, Command, CommandKind, EventKind, SessionEvent
from engine.turns.controller import TurnController, TurnSettings

QUIET = bytes(FRAME_BYTES)


class Timeline:
    def __init__(self, agent: object, **settings: object) -> None:
        self.out: list[AgentAudio | Command] = []
        self.tc = TurnController(agent, TurnSettings(**settings), self.out.append)  # type: ignore[arg-type]
        self.t = 0.0

    def frames(self, n: int, pcm: bytes = QUIET) -> None:
        for _ in range(n):
            self.t += 0.02
            self.tc.on_frame(self.t, pcm)

    def event(self, kind: EventKind, **kw: object) -> None:
        self.tc.on_event(SessionEvent(kind, self.t, **kw))  # type: ignore[arg-type]

    def audio(self) -> list[AgentAudio]:
        return [o for o in self.out if isinstance(o, AgentAudio)]

    def commands(self) -> list[CommandKind]:
        return [o.kind for o in self.out if isinstance(o, Command)]
