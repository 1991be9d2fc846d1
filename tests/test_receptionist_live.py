"""The receptionist speaking through a live slot of the batched model (`voice = "live"`): the
shipped unit LM stepped by a real scheduler, the real recognizer process, the turn controller,
held-out caller voices (espeak-ng en-us+f3)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest

from engine.agents.receptionist.asr import make_decoder, transcribe
from engine.agents.receptionist.live import LiveReceptionistAgent
from engine.agents.receptionist.prompts import prompt_texts
from engine.agents.receptionist.recognizer import Recognizer
from engine.session import FRAME_BYTES, AgentAudio, AudioFlags, CommandKind, EventKind, PlayoutState
from engine.turns.controller import TurnState
from gateway.bench.model import word_errors
from tests.conftest import DATA
from tests.support.audio import read_wav
from tests.support.timeline import Timeline

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def recognizer() -> Iterator[Recognizer]:
    rec = Recognizer()
    assert rec.wait_ready(30), "recognizer process did not start"
    yield rec
    rec.close()


@pytest.fixture(scope="module")
def scheduler():  # type: ignore[no-untyped-def]
    from engine.agents.receptionist.model_voice import WEIGHTS
    from engine.batch.scheduler import BatchScheduler
    from engine.model.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    return BatchScheduler(load_checkpoint(WEIGHTS), 2)


class LiveCall(Timeline):
    """Frames in at 20 ms; the scheduler ticks every model frame (40 ms) as the engine's loop does."""

    def __init__(self, agent: LiveReceptionistAgent, scheduler) -> None:  # type: ignore[no-untyped-def]
        super().__init__(agent, barge_in_min_ms=300, end_of_turn_ms=200, end_of_turn_max_ms=800)
        self.sched, self.n = scheduler, 0

    def frames(self, n: int, pcm: bytes = bytes(FRAME_BYTES)) -> None:
        for _ in range(n):
            super().frames(1, pcm)
            self.n += 1
            if self.n % 2 == 0:
                self.sched.tick()

    def caller_turn(self, clip: str) -> None:
        speech, _ = read_wav(DATA / f"{clip}_16k.wav")
        raw = speech.astype(np.int16).tobytes()
        raw += bytes((-len(raw)) % FRAME_BYTES)
        self.event(EventKind.SPEECH_START)
        for i in range(0, len(raw), FRAME_BYTES):
            self.frames(1, raw[i : i + FRAME_BYTES])
        self.event(EventKind.SPEECH_STOP)

    def until_reply_played(self, utterance: int, timeout_s: float = 60.0) -> list[AgentAudio]:
        """Step until the reply's last frame is out, then report it played, as the gateway would."""
        deadline = time.monotonic() + timeout_s
        while not any(a.utterance == utterance and a.flags & AudioFlags.END_OF_UTTERANCE for a in self.audio()):
            assert time.monotonic() < deadline, f"reply #{utterance} never ended"
            self.frames(1)
        self.event(EventKind.PLAYOUT, playout=PlayoutState.FINISHED, utterance=utterance)
        return [a for a in self.audio() if a.utterance == utterance]


def _closest_reply(pcm: np.ndarray) -> tuple[str, str]:
    heard = transcribe(make_decoder("freeform"), pcm.tobytes()).text
    rates = {name: word_errors(text, heard) for name, text in prompt_texts().items()}
    return min(rates, key=lambda n: rates[n][0] / rates[n][1]), heard


def test_a_spoken_question_is_answered_by_the_live_model_with_its_reply_text(recognizer, scheduler) -> None:  # type: ignore[no-untyped-def]
    agent = LiveReceptionistAgent({"greeting": ""}, scheduler, 1, recognizer=recognizer)
    call = LiveCall(agent, scheduler)
    call.caller_turn("hours_f3")
    reply = call.until_reply_played(1)
    assert agent.intents == ["hours"] and agent.replies == ["hours"]
    pcm = np.frombuffer(b"".join(a.pcm for a in reply), np.int16)
    timeline_s = len(scheduler.model.frontend.reply_tokens(prompt_texts()["hours"])) * 0.04
    assert timeline_s <= pcm.size / 16000 <= timeline_s + 1.5, (pcm.size / 16000, timeline_s)  # all of it, then over
    closest, heard = _closest_reply(pcm)
    assert closest == "hours", heard
    assert call.tc.state is TurnState.LISTENING and not call.commands()
    agent.close()


def test_a_question_asked_after_a_long_listen_is_still_answered_aloud(recognizer, scheduler) -> None:  # type: ignore[no-untyped-def]
    """Twelve seconds into a call (the KV ring long wrapped) the reply is speech, not silence: an
    LM allowed to attend further back than its 200-frame training rows fell silent here."""
    agent = LiveReceptionistAgent({"greeting": ""}, scheduler, 1, recognizer=recognizer)
    call = LiveCall(agent, scheduler)
    call.frames(600)  # 12 s of a quiet line: the greeting's time, the caller thinking
    call.caller_turn("hours_f3")
    pcm = np.frombuffer(b"".join(a.pcm for a in call.until_reply_played(1)), np.int16).astype(np.float64)
    level = 10 * np.log10(np.mean(pcm**2) / 32768**2 + 1e-12)
    assert level > -35, f"the reply came out at {level:.1f} dBFS"
    agent.close()


def test_faint_residual_echo_does_not_silence_the_reply(recognizer, scheduler) -> None:  # type: ignore[no-untyped-def]
    """A line's residual echo of the agent (-80 to -60 dBFS bursts after the canceller, as on a
    SIP call) is not the caller talking over it: the reply goes on at full level."""
    agent = LiveReceptionistAgent({"greeting": ""}, scheduler, 1, recognizer=recognizer)
    call = LiveCall(agent, scheduler)
    call.caller_turn("hours_f3")
    rng = np.random.default_rng(7)
    deadline = time.monotonic() + 60
    while not any(a.flags & AudioFlags.END_OF_UTTERANCE for a in call.audio()):
        assert time.monotonic() < deadline
        burst = rng.normal(0, 32768 * 10 ** (-62 / 20), 320) * (rng.random() < 0.5)
        call.frames(1, burst.astype(np.int16).tobytes())
    pcm = np.frombuffer(b"".join(a.pcm for a in call.audio()), np.int16).astype(np.float64)
    tail = pcm[pcm.size // 2 :]  # the second half of the reply
    level = 10 * np.log10(np.mean(tail**2) / 32768**2 + 1e-12)
    assert level > -35, f"the reply's second half came out at {level:.1f} dBFS"
    agent.close()


def test_the_transfer_follows_the_live_reply_once_it_has_played(recognizer, scheduler) -> None:  # type: ignore[no-untyped-def]
    agent = LiveReceptionistAgent({"greeting": "", "transfer_target": "sip:desk@pbx"}, scheduler, 0,
                                  recognizer=recognizer)
    call = LiveCall(agent, scheduler)
    call.caller_turn("person_f3")
    deadline = time.monotonic() + 60
    while not any(a.flags & AudioFlags.END_OF_UTTERANCE for a in call.audio()):
        assert CommandKind.TRANSFER not in call.commands(), "transferred before the reply had played"
        assert time.monotonic() < deadline
        call.frames(1)
    assert agent.replies == ["person"] and CommandKind.TRANSFER not in call.commands()
    call.event(EventKind.PLAYOUT, playout=PlayoutState.FINISHED, utterance=1)
    assert call.commands() == [CommandKind.TRANSFER]
    agent.close()


def test_a_barge_in_cuts_the_live_reply_and_drops_the_rest_of_its_text(recognizer, scheduler) -> None:  # type: ignore[no-untyped-def]
    agent = LiveReceptionistAgent({"greeting": ""}, scheduler, 1, recognizer=recognizer)
    call = LiveCall(agent, scheduler)
    call.caller_turn("hours_f3")
    deadline = time.monotonic() + 60
    while len(call.audio()) < 25:  # half a second of the reply
        assert time.monotonic() < deadline
        call.frames(1)
    speech = read_wav(DATA / "person_f3_16k.wav")[0].astype(np.int16).tobytes()
    call.event(EventKind.SPEECH_START)
    for i in range(20):  # 400 ms of the caller's voice
        call.frames(1, speech[(26 + i) * FRAME_BYTES : (27 + i) * FRAME_BYTES])
    assert CommandKind.FLUSH in call.commands()
    assert not scheduler.slots[1].speaking and not scheduler.slots[1].text
    agent.close()
