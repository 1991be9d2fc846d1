"""The receptionist agent (`agent = "receptionist"`): answers callers of a fictional dental
practice (script.py) with pre-rendered prompts.

Each caller turn (the VAD's speech-start to the end of the turn, as the turn controller cuts
it) goes to the shared recognizer process (pocketsphinx, off the engine's loop); the reply
is a PendingReply the controller polls every 20 ms. The transcript is classified into an
intent (intents.py) whose prompt is played through the turn controller, so barge-in and hold
work as for every agent. "person" ends with a blind transfer (REFER) to the dialplan's
`transfer_target`; "goodbye" with a hang-up, each once its prompt has played.

The answers' voice: the committed piper prompts, or with `voice = "model"` the same texts
spoken by talkover's own unit LM + vocoder (model_voice.py; piper until they are rendered).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from engine.agents import prompts as builtin
from engine.agents.base import AgentAction, Reply
from engine.agents.receptionist import model_voice, prompts
from engine.agents.receptionist.intents import classify
from engine.agents.receptionist.recognizer import Recognizer, shared
from engine.agents.receptionist.script import BY_NAME, FALLBACK
from engine.logs import get_logger
from engine.session import SAMPLE_RATE, CommandKind

MIN_TURN_S = 0.25  # shorter turns (a cough, a click) get no answer
MAX_TURN_S = 15.0  # longer turns are cut: the recognizer's queue serves every call


@dataclass
class PendingAnswer:
    """A caller turn in the recognizer; poll() turns its transcript into the reply."""

    agent: "ReceptionistAgent"
    request: int
    submitted: float

    def poll(self) -> Reply | None:
        transcript = self.agent.recognizer.result(self.request)
        if transcript is None:
            return None
        return self.agent.answer(transcript.text, transcript.decode_s, transcript.audio_s,
                                 time.monotonic() - self.submitted)


class ReceptionistAgent:
    def __init__(self, settings: dict[str, object], call_id: str = "", recognizer: Recognizer | None = None) -> None:
        self._greeting = str(settings.get("greeting", ""))
        self._transfer_digit = str(settings.get("transfer_digit", ""))
        self._transfer_target = str(settings.get("transfer_target", ""))
        self.recognizer = recognizer or shared()  # started now: it loads while the greeting plays
        self.voice = model_voice.shared() if settings.get("voice") == "model" else None
        self.log = get_logger(call_id=call_id, component="receptionist")
        self._last: str = "welcome"
        self.intents: list[str] = []  # what each answered turn was taken for (tests, logs)
        self.interruptions: list[tuple[int, int]] = []

    def greeting(self) -> np.ndarray | None:
        welcome = self._speech("welcome")
        configured = builtin.load_prompt(self._greeting) if self._greeting else None
        if configured is None:
            return welcome
        gap = np.zeros(SAMPLE_RATE // 5, np.int16)
        return np.concatenate([configured, gap, welcome])

    def respond(self, caller_turn: np.ndarray) -> PendingAnswer | None:
        if caller_turn.size < MIN_TURN_S * SAMPLE_RATE:
            return None
        pcm = caller_turn[: int(MAX_TURN_S * SAMPLE_RATE)].astype(np.int16).tobytes()
        return PendingAnswer(self, self.recognizer.submit(pcm), time.monotonic())

    def answer(self, text: str, decode_s: float = 0.0, audio_s: float = 0.0, waited_s: float = 0.0) -> Reply:
        """The reply to a transcript: the intent's prompt, then its action."""
        name, then = self.choose(text, decode_s, audio_s, waited_s)
        return Reply(self._speech(name), then)

    def choose(self, text: str, decode_s: float = 0.0, audio_s: float = 0.0,
               waited_s: float = 0.0) -> tuple[str, AgentAction | None]:
        """What to say to a transcript (a name of prompts.prompt_texts()) and what to do after it."""
        match = classify(text)
        intent = match.intent
        self.intents.append(intent)
        self.log.info("caller intent", intent=intent, score=match.score, text=text, decode_ms=round(decode_s * 1e3),
                      audio_s=round(audio_s, 2), rtf=round(decode_s / audio_s, 3) if audio_s else None,
                      waited_ms=round(waited_s * 1e3))
        if intent == "repeat":
            return self._last, None
        if intent == "person":
            if not self._transfer_target:
                return "no_transfer", None
            return "person", AgentAction(CommandKind.TRANSFER, self._transfer_target, "caller asked for a person")
        self._last = intent if BY_NAME[intent].reply else FALLBACK.name
        then = AgentAction(CommandKind.HANGUP, reason="caller said goodbye") if intent == "goodbye" else None
        return self._last, then

    def _speech(self, name: str) -> np.ndarray:
        if self.voice is not None:
            audio = self.voice.get(name)
            if audio is not None:
                return audio
            self.log.warning("model voice not rendered: the piper prompt is played", reply=name,
                             error=self.voice.error or None)
        return prompts.load(name)

    def on_dtmf(self, digit: str, duration_ms: int) -> np.ndarray | AgentAction | None:
        if digit == self._transfer_digit and self._transfer_target:
            return AgentAction(CommandKind.TRANSFER, self._transfer_target)
        return builtin.dtmf_tone(digit)

    def on_interrupted(self, utterance: int, heard_ms: int) -> None:
        self.interruptions.append((utterance, heard_ms))

    def close(self) -> None:
        pass  # the recognizer is shared by the engine's calls
