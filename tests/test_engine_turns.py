"""The model agent under the turn controller, as timelines: a real tiny model stepped by a real
scheduler every 80 ms, scripted VAD/hold/DTMF events in, agent frames and commands out."""

from __future__ import annotations

import pytest
import torch

from engine.agents.model_agent import ModelAgent
from engine.batch.scheduler import BatchScheduler
from engine.model.config import preset
from engine.model.model import DTMF_EVENTS, EVENT_CUT_OFF, EVENT_RESUMED, SpeechModel
from engine.session import FRAME_BYTES, AgentAudio, AudioFlags, Command, CommandKind, EventKind, PlayoutState, SessionEvent
from engine.turns.controller import TurnController, TurnSettings, TurnState
from tests.conftest import DATA
from tests.support.audio import read_wav

QUIET = bytes(FRAME_BYTES)


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    torch.set_num_threads(1)
    return SpeechModel(preset("tiny"))


class Call:
    def __init__(self, model: SpeechModel, **agent: object) -> None:
        self.sched = BatchScheduler(model, 2)
        self.out: list[AgentAudio | Command] = []
        settings = {"greeting": "", "min_reply_ms": 800, "max_reply_ms": 2000, "transfer_digit": "0",
                    "transfer_target": "sip:op@pbx", **agent}
        self.agent = ModelAgent(settings, self.sched, 1)
        turn = TurnSettings(barge_in_min_ms=300, end_of_turn_ms=200, end_of_turn_max_ms=1000)
        self.tc = TurnController(self.agent, turn, self.out.append)
        self.t, self.n = 0.0, 0
        pcm, _ = read_wav(DATA / "hours_joe_16k.wav")
        self.speech = pcm.tobytes()

    def frames(self, n: int, speech: bool = False) -> None:
        for _ in range(n):
            self.t += 0.02
            pcm = self.speech[(self.n % 400) * FRAME_BYTES : (self.n % 400 + 1) * FRAME_BYTES] if speech else QUIET
            self.n += 1
            self.tc.on_frame(self.t, pcm)
            if self.n % 4 == 0:
                self.sched.tick()  # the engine loop's tick, every model frame

    def event(self, kind: EventKind, **kw: object) -> None:
        self.tc.on_event(SessionEvent(kind, self.t, **kw))  # type: ignore[arg-type]

    def audio(self, utterance: int | None = None) -> list[AgentAudio]:
        return [o for o in self.out if isinstance(o, AgentAudio) and utterance in (None, o.utterance)]

    def commands(self) -> list[CommandKind]:
        return [o.kind for o in self.out if isinstance(o, Command)]

    def note_time(self, prefix: str) -> float:
        return next(t for t, what in self.tc.log if what.startswith(prefix))

    def caller_turn(self, ms: int = 1000) -> float:
        self.event(EventKind.SPEECH_START)
        self.frames(ms // 20, speech=True)
        self.event(EventKind.SPEECH_STOP)
        return self.t


def test_a_streamed_reply_follows_the_callers_turn_and_ends_with_its_last_frame(model: SpeechModel) -> None:
    call = Call(model)
    stop = call.caller_turn()
    call.frames(160)
    ended = call.note_time("caller turn ended")
    assert ended >= stop + 0.2 - 1e-9
    reply = call.audio(1)
    assert 800 <= 20 * len(reply) <= 2000
    assert reply[-1].flags & AudioFlags.END_OF_UTTERANCE
    assert not any(f.flags & AudioFlags.END_OF_UTTERANCE for f in reply[:-1])
    assert call.tc.state is TurnState.SPEAKING
    call.event(EventKind.PLAYOUT, playout=PlayoutState.FINISHED, utterance=1)
    assert call.tc.state is TurnState.LISTENING
    started = call.note_time("speak reply #1")
    assert started - ended <= 0.1 + 1e-9, "the first reply frames come within a tick or so"


def test_frames_are_emitted_a_few_ahead_of_playout_not_all_at_once(model: SpeechModel) -> None:
    call = Call(model, max_reply_ms=6000, min_reply_ms=6000, signal_threshold=0.0)
    call.caller_turn()
    call.frames(30)
    start = call.note_time("speak reply #1")
    played_ticks = round((call.t - start) / 0.02)
    assert len(call.audio(1)) <= played_ticks + 3 + 1  # lead_frames, plus at most one tick's batch


def test_end_of_turn_needs_the_models_signal_or_the_longer_limit(model: SpeechModel) -> None:
    eager = Call(model, signal_threshold=0.0)  # the model always says the caller is done
    stop = eager.caller_turn()
    eager.frames(70)
    assert eager.note_time("caller turn ended") == pytest.approx(stop + 0.2, abs=0.021)
    stubborn = Call(model, signal_threshold=1.01)  # the model never agrees: the limit ends the turn
    stop = stubborn.caller_turn()
    stubborn.frames(40)
    assert not [w for _, w in stubborn.tc.log if w.startswith("caller turn ended")]
    stubborn.frames(20)
    assert stubborn.note_time("caller turn ended") == pytest.approx(stop + 1.0, abs=0.021)


def test_a_short_pause_does_not_end_the_turn(model: SpeechModel) -> None:
    call = Call(model, signal_threshold=0.0)
    call.caller_turn(400)
    call.frames(5)  # 100 ms pause, shorter than end_of_turn_ms
    call.caller_turn(400)
    assert not [w for _, w in call.tc.log if w.startswith("caller turn ended")]
    call.frames(15)
    assert len([w for _, w in call.tc.log if w.startswith("caller turn ended")]) == 1


def test_barge_in_on_a_streamed_reply_pauses_commits_and_tells_the_model(model: SpeechModel) -> None:
    call = Call(model, max_reply_ms=6000, min_reply_ms=6000, signal_threshold=0.0)
    call.caller_turn()
    call.frames(30)
    assert call.tc.state is TurnState.SPEAKING
    call.event(EventKind.SPEECH_START)  # the gateway paused playout in this tick
    sent = len(call.audio(1))
    call.frames(14, speech=True)
    assert call.commands() == [] and len(call.audio(1)) == sent  # paused: nothing more sent
    for _ in range(30):  # commits once 300 ms of the caller's frames were voiced (speech has gaps)
        call.frames(1, speech=True)
        if call.commands():
            break
    assert call.commands() == [CommandKind.FLUSH] and call.tc.state is TurnState.LISTENING
    assert not call.sched.slots[1].speaking, "generation stopped"
    call.event(EventKind.PLAYOUT, playout=PlayoutState.FLUSHED, utterance=1, position_ms=260)
    assert call.agent.interruptions == [(1, 260)]
    assert EVENT_CUT_OFF in call.sched.slots[1].events
    call.frames(20, speech=True)
    assert len(call.audio(1)) == sent, "no reply audio after the commit"


def test_hold_freezes_the_slot_and_resume_continues(model: SpeechModel) -> None:
    call = Call(model)
    call.frames(8)
    steps = call.sched.slots[1].steps
    call.event(EventKind.HOLD)
    assert call.sched.slots[1].frozen
    call.frames(20)  # frames keep coming on a bad line: the slot must not listen or step
    assert call.sched.slots[1].steps == steps and not call.sched.slots[1].inbox
    call.event(EventKind.RESUME)
    assert not call.sched.slots[1].frozen and EVENT_RESUMED in call.sched.slots[1].events
    call.frames(8)
    assert call.sched.slots[1].steps == steps + 2


def test_dtmf_reaches_the_model_and_the_transfer_digit_transfers(model: SpeechModel) -> None:
    call = Call(model)
    call.event(EventKind.DTMF, digit="7", duration_ms=100)
    assert DTMF_EVENTS["7"] in call.sched.slots[1].events
    call.event(EventKind.DTMF, digit="0", duration_ms=100)
    assert call.commands() == [CommandKind.TRANSFER]
