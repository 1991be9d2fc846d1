"""The receptionist agent: intent rules, the turn controller's deferred replies and actions,
and pocketsphinx (in its own process) on held-out caller voices."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pytest

from engine.agents.base import AgentAction, Reply
from engine.agents.receptionist import prompts
from engine.agents.receptionist.agent import ReceptionistAgent
from engine.agents.receptionist.intents import classify
from engine.agents.receptionist.recognizer import Recognizer
from engine.agents.receptionist.script import GENERAL_SENTENCES, INTENTS
from engine.session import FRAME_BYTES, CommandKind, EventKind, PlayoutState
from engine.turns.controller import TurnState
from tests.conftest import DATA
from tests.support.audio import read_wav
from tests.support.timeline import Timeline as BaseTimeline



# -- intent rules ------------------------------------------------------------------------------
@pytest.mark.parametrize("intent", INTENTS, ids=lambda i: i.name)
def test_every_scripted_phrasing_gets_its_intent(intent: object) -> None:
    for text in intent.phrasings:  # type: ignore[attr-defined]
        assert classify(text).intent == intent.name, text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "text, intent",
    [
        ("i wear your opening hours", "hours"),  # pocketsphinx's words for "hi, what are your opening hours"
        ("can i get a cleaning scheduled", "book"),
        ("i'd like to reschedule my booking", "cancel"),  # not "book"
        ("does my insurance cover a cleaning", "insurance"),  # not "book"/"prices"
        ("where can i leave the car", "parking"),  # "where" alone is only a hint of "address"
        ("the river was very high", "fallback"),
        ("", "fallback"),
    ],
)
def test_recognizer_like_text(text: str, intent: str) -> None:
    assert classify(text).intent == intent


def test_general_sentences_fall_back() -> None:
    assert [classify(s).intent for s in GENERAL_SENTENCES] == ["fallback"] * len(GENERAL_SENTENCES)


def test_there_are_at_least_ten_intents_each_with_a_committed_prompt() -> None:
    assert len(INTENTS) >= 10
    total = 0
    for name in prompts.prompt_texts():
        audio = prompts.load(name)
        assert audio.size > 16000, name  # at least a second of speech
        total += prompts.prompt_path(name).stat().st_size
    assert total < 5e6


# -- deferred replies in the turn controller ------------------------------------------------------
@dataclass
class Later:
    reply: Reply
    ready: bool = False

    def poll(self) -> Reply | None:
        return self.reply if self.ready else None


class ScriptedAgent:
    def __init__(self, answer: Later) -> None:
        self.answer = answer

    def greeting(self) -> None:
        return None

    def respond(self, caller_turn: np.ndarray) -> Later:
        return self.answer

    def on_dtmf(self, digit: str, duration_ms: int) -> None:
        return None

    def on_interrupted(self, utterance: int, heard_ms: int) -> None:
        pass

    def close(self) -> None:
        pass


class Timeline(BaseTimeline):
    def caller_turn(self, speech: np.ndarray) -> None:
        self.event(EventKind.SPEECH_START)
        raw = speech.astype(np.int16).tobytes()
        raw += bytes((-len(raw)) % FRAME_BYTES)
        for i in range(0, len(raw), FRAME_BYTES):
            self.frames(1, raw[i : i + FRAME_BYTES])
        self.event(EventKind.SPEECH_STOP)
        self.frames(12)  # end_of_turn_ms = 200


TONE = (np.sin(np.arange(8000) / 3) * 8000).astype(np.int16)


def test_a_pending_reply_is_spoken_when_ready_and_its_action_follows_the_playout() -> None:
    later = Later(Reply(TONE, AgentAction(CommandKind.TRANSFER, "sip:desk@pbx")))
    tl = Timeline(ScriptedAgent(later))
    tl.caller_turn(TONE)
    assert tl.tc.state is TurnState.RESPONDING and not tl.audio()
    tl.frames(10)
    assert not tl.audio(), "spoke before the reply was ready"
    later.ready = True
    tl.frames(40)
    assert tl.tc.state is TurnState.SPEAKING and len(tl.audio()) == -(-TONE.size // 320)
    assert CommandKind.TRANSFER not in tl.commands(), "transferred before the caller heard the reply"
    utterance = tl.audio()[-1].utterance
    tl.event(EventKind.PLAYOUT, playout=PlayoutState.FINISHED, utterance=utterance)
    assert tl.commands() == [CommandKind.TRANSFER]
    assert tl.tc.state is TurnState.LISTENING


def test_a_reply_ready_while_the_caller_speaks_again_is_dropped() -> None:
    later = Later(Reply(TONE))
    tl = Timeline(ScriptedAgent(later))
    tl.caller_turn(TONE)
    tl.event(EventKind.SPEECH_START)
    later.ready = True
    tl.frames(5, TONE[:320].tobytes())
    assert not tl.audio()
    assert "reply dropped: the caller is speaking" in [w for _, w in tl.tc.log]


def test_the_action_is_dropped_when_the_caller_cuts_the_reply_off() -> None:
    later = Later(Reply(np.tile(TONE, 4), AgentAction(CommandKind.HANGUP)), ready=True)
    tl = Timeline(ScriptedAgent(later))
    tl.caller_turn(TONE)
    tl.frames(5)
    tl.event(EventKind.SPEECH_START)
    tl.frames(20, TONE[:320].tobytes())  # 400 ms of voiced speech: barge-in commits
    assert CommandKind.FLUSH in tl.commands()
    tl.event(EventKind.PLAYOUT, playout=PlayoutState.FLUSHED, utterance=1, position_ms=200)
    tl.event(EventKind.PLAYOUT, playout=PlayoutState.FINISHED, utterance=1)
    assert CommandKind.HANGUP not in tl.commands()


# -- pocketsphinx on held-out voices --------------------------------------------------------------
@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    rec = Recognizer()
    assert rec.wait_ready(20), "recognizer process did not start"
    yield rec
    rec.close()


def _decode(rec: Recognizer, pcm: np.ndarray, timeout: float = 20.0) -> tuple[str, float]:
    """The transcript, and the longest the engine's side (submit, one poll) took."""
    t0 = time.perf_counter()
    req = rec.submit(pcm.tobytes())
    worst = time.perf_counter() - t0
    deadline = time.monotonic() + timeout
    while True:
        t0 = time.perf_counter()
        result = rec.result(req)
        worst = max(worst, time.perf_counter() - t0)
        if result is not None:
            return result.text, worst
        assert time.monotonic() < deadline, "no transcript in time"
        time.sleep(0.005)


@pytest.mark.parametrize("clip, intent", [("hours_f3", "hours"), ("person_f3", "person")])
def test_a_held_out_voice_gets_the_right_intent_and_the_engine_never_waits(
    recognizer: Recognizer, clip: str, intent: str
) -> None:
    audio, _ = read_wav(DATA / f"{clip}_16k.wav")  # espeak-ng en-us+f3: a held-out voice (engine/data/voices.py)
    text, worst_s = _decode(recognizer, audio)
    assert classify(text).intent == intent, text
    assert worst_s < 0.02, f"the engine side blocked for {worst_s * 1e3:.1f} ms (one 20 ms tick)"


def test_the_agent_answers_a_spoken_question_through_the_controller(recognizer: Recognizer) -> None:
    agent = ReceptionistAgent({"greeting": "", "transfer_target": "sip:desk@pbx"}, recognizer=recognizer)
    tl = Timeline(agent)
    audio, _ = read_wav(DATA / "hours_f3_16k.wav")
    tl.caller_turn(audio)
    deadline = time.monotonic() + 20
    while tl.tc.state is TurnState.RESPONDING:
        assert time.monotonic() < deadline, "no answer in time"
        tl.frames(1)
        time.sleep(0.005)
    assert agent.intents == ["hours"]
    spoken = np.frombuffer(b"".join(a.pcm for a in tl.audio()), np.int16)
    hours = prompts.load("hours")
    assert np.array_equal(spoken[:960], hours[:960])  # the first frames of the hours prompt
