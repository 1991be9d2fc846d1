"""The receptionist speaking through a live slot of the batched speech model (dialplan
`agent = "receptionist"`, `voice = "live"`; needs `[engine] model` = a trained unit LM, e.g.
engine/model/weights/agent).

The receptionist's logic (agent.py: recognizer, intents, transfer and hang-up) decides what to
say; the unit LM says it, a model frame at a time, in the engine's one batched step with every
other call. That is the hybrid the model was trained for: the reply's text comes from the
agent's logic, and the LM hears the caller all along, so it falls silent when talked over.

A reply: the controller ends the caller's turn and hands over its audio → the turn goes to the
shared recognizer process → its transcript picks a reply text (polled each frame, ~100-200 ms)
→ `BatchScheduler.say` queues its phoneme timeline and the slot speaks → the reply is over when
the model says so once the timeline is spoken, or at its length plus REPLY_SLACK_MS. The
action (transfer, hang-up) follows once the reply has played. The greeting is the welcome text
pre-rendered by the same model in the background (model_voice.py, ~1 s; piper's until then).
"""

from __future__ import annotations

import time

import numpy as np

from engine.agents.base import AgentAction
from engine.agents.model_agent import ModelAgent
from engine.agents.receptionist import model_voice
from engine.agents.receptionist.agent import MAX_TURN_S, MIN_TURN_S, ReceptionistAgent
from engine.agents.receptionist.prompts import prompt_texts
from engine.agents.receptionist.recognizer import Recognizer
from engine.batch.scheduler import BatchScheduler
from engine.session import SAMPLE_RATE

MIN_REPLY_MS = 600  # the reply-over signal counts from here (the model may call it early)
REPLY_SLACK_MS = 1500  # past the reply's timeline (lead frames, the voice's decay)


class LiveReceptionistAgent(ModelAgent):
    def __init__(self, settings: dict[str, object], scheduler: BatchScheduler, slot: int, call_id: str = "",
                 recognizer: Recognizer | None = None) -> None:
        super().__init__({"min_reply_ms": MIN_REPLY_MS, **settings}, scheduler, slot)
        self.logic = ReceptionistAgent({**settings, "voice": "prompts"}, call_id, recognizer)
        self.logic.voice = model_voice.shared(scheduler.model, ("welcome",))  # the greeting, in the same voice
        self.texts = prompt_texts()
        self._request: int | None = None
        self._submitted = 0.0
        self._action: AgentAction | None = None
        self._after_text = 0  # model frames since the reply's timeline was used up
        self.replies: list[str] = []  # what each answered turn was given (tests, logs)

    @property
    def intents(self) -> list[str]:
        return self.logic.intents

    def greeting(self) -> np.ndarray | None:
        return self.logic.greeting()

    def start_reply(self, t: float, turn: np.ndarray | None = None) -> None:
        self._collect()
        self._frames, self._made_ms, self._action = [], 0, None
        self.sched.unsay(self.slot)
        if turn is None or turn.size < MIN_TURN_S * SAMPLE_RATE:
            self._replying, self._done, self._request = False, True, None
            return
        self._replying, self._done = False, False  # until the transcript is back: nothing to say yet
        pcm = turn[: int(MAX_TURN_S * SAMPLE_RATE)].astype(np.int16).tobytes()
        self._request, self._submitted = self.logic.recognizer.submit(pcm), time.monotonic()

    def stop_reply(self) -> None:
        self._request, self._action = None, None
        self.sched.unsay(self.slot)
        super().stop_reply()

    def reply_action(self) -> AgentAction | None:
        action, self._action = self._action, None
        return action

    def _collect(self) -> None:
        if self._request is not None:
            transcript = self.logic.recognizer.result(self._request)
            if transcript is not None:
                self._request = None
                name, self._action = self.logic.choose(transcript.text, transcript.decode_s, transcript.audio_s,
                                                       time.monotonic() - self._submitted)
                self._speak(name)
        super()._collect()

    def _reply_frames(self, frames: list[bytes], over: bool) -> None:
        # The text is the agent's: the model's reply-over counts once the timeline is spoken and
        # its last phoneme's audio is out (measured: it fired once ~1.8 s early, at the end of a
        # sentence with a sentence to go).
        self._after_text = 0 if self.sched.saying(self.slot) else self._after_text + 1
        lead = self.sched.model.frontend.lead_frames  # type: ignore[union-attr]
        super()._reply_frames(frames, over and self._after_text > lead)

    def _speak(self, name: str) -> None:
        self.replies.append(name)
        timeline_ms = self.sched.say(self.slot, self.texts[name]) * self.sched.model.cfg.frame_ms
        self.max_reply_ms = int(timeline_ms + REPLY_SLACK_MS)
        self._replying = True
        self._set_speaking(True)
