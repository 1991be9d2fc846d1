"""The turn controller as timelines: scripted gateway events in, expected actions out."""

from __future__ import annotations

import numpy as np

from engine.agents.echo import EchoAgent
from engine.session import (
    FRAME_BYTES,
    AudioFlags,
    Command,
    CommandKind,
    EventKind,
    PlayoutState,
)
from engine.turns.controller import TurnState
from tests.support.timeline import Timeline as BaseTimeline

SPEECH = (np.ones(FRAME_BYTES // 2, np.int16) * 3000).tobytes()


def Timeline(**settings: object) -> BaseTimeline:  # noqa: N802 - reads like the class it builds
    """The echo-test agent (chime greeting, DTMF 0 transfers) on a timeline."""
    agent = EchoAgent({"greeting": "chime", "transfer_digit": "0", "transfer_target": "sip:op@pbx"})
    return BaseTimeline(agent, **settings)


def test_greeting_is_emitted_a_few_frames_ahead_then_one_per_tick() -> None:
    tl = Timeline(lead_frames=3)
    tl.event(EventKind.STARTED)
    assert tl.tc.state is TurnState.SPEAKING and len(tl.audio()) == 3
    tl.frames(5)
    assert len(tl.audio()) == 8
    tl.frames(100)
    frames = tl.audio()
    assert len(frames) == 30  # the 600 ms chime
    assert frames[-1].flags & AudioFlags.END_OF_UTTERANCE and not frames[0].flags & AudioFlags.END_OF_UTTERANCE
    tl.event(EventKind.PLAYOUT, playout=PlayoutState.FINISHED, utterance=1)
    assert tl.tc.state is TurnState.LISTENING


def test_barge_in_pauses_then_commits_after_the_minimum() -> None:
    tl = Timeline(barge_in_min_ms=300)
    tl.event(EventKind.STARTED)
    tl.frames(5)
    tl.event(EventKind.SPEECH_START)  # the gateway paused playout in this tick
    sent = len(tl.audio())
    tl.frames(14, SPEECH)  # 280 ms: not yet
    assert tl.commands() == [] and len(tl.audio()) == sent  # nothing generated while paused
    tl.frames(1, SPEECH)  # 300 ms
    assert tl.commands() == [CommandKind.FLUSH]
    assert tl.tc.state is TurnState.LISTENING
    tl.event(EventKind.PLAYOUT, playout=PlayoutState.FLUSHED, utterance=1, position_ms=140)
    assert tl.tc.agent.interruptions == [(1, 140)]  # type: ignore[attr-defined]


def test_backchannel_shorter_than_the_minimum_resumes_playback() -> None:
    tl = Timeline(barge_in_min_ms=300)
    tl.event(EventKind.STARTED)
    tl.frames(3)
    tl.event(EventKind.SPEECH_START)
    tl.frames(8, SPEECH)  # "mm-hm", 160 ms
    tl.event(EventKind.SPEECH_STOP)
    assert tl.commands() == [CommandKind.RESUME]
    before = len(tl.audio())
    tl.frames(2)
    assert len(tl.audio()) == before + 2 and tl.tc.state is TurnState.SPEAKING


def test_backchannel_is_resumed_even_when_speech_stop_comes_after_the_minimum() -> None:
    """The VAD's speech-stop arrives its hangover (500 ms) after a 200 ms "mm-hm" ended:
    later than barge_in_min_ms, yet only 200 ms were voiced."""
    tl = Timeline(barge_in_min_ms=300)
    tl.event(EventKind.STARTED)
    tl.frames(3)
    tl.event(EventKind.SPEECH_START)
    tl.frames(10, SPEECH)  # 200 ms "mm-hm"
    tl.frames(25)  # the VAD's hangover
    assert tl.commands() == []
    tl.event(EventKind.SPEECH_STOP)
    assert tl.commands() == [CommandKind.RESUME] and tl.tc.state is TurnState.SPEAKING


def test_barge_in_split_by_a_pause_continues_its_count_but_spaced_backchannels_do_not() -> None:
    tl = Timeline(barge_in_min_ms=300, barge_in_join_ms=600)
    tl.event(EventKind.STARTED)
    tl.frames(3)
    tl.event(EventKind.SPEECH_START)
    tl.frames(10, SPEECH)  # "wait —" 200 ms
    tl.frames(25)  # the VAD's hangover
    tl.event(EventKind.SPEECH_STOP)
    assert tl.commands() == [CommandKind.RESUME]
    tl.frames(20)  # 400 ms more of pause: the agent plays on
    tl.event(EventKind.SPEECH_START)
    tl.frames(5, SPEECH)  # 200 + 100 ms voiced: the minimum, counted over both parts
    assert tl.commands() == [CommandKind.RESUME, CommandKind.FLUSH]

    spaced = Timeline(barge_in_min_ms=300, barge_in_join_ms=600)
    spaced.event(EventKind.STARTED)
    for _ in range(2):  # two "mm-hm"s, the second 700 ms after the first was resumed
        spaced.event(EventKind.SPEECH_START)
        spaced.frames(10, SPEECH)
        spaced.frames(25)
        spaced.event(EventKind.SPEECH_STOP)
        spaced.frames(35)
    assert spaced.commands() == [CommandKind.RESUME, CommandKind.RESUME]


def test_not_interruptible_agent_keeps_talking() -> None:
    tl = Timeline(interruptible=False)
    tl.event(EventKind.STARTED)
    tl.event(EventKind.SPEECH_START)
    tl.frames(30, SPEECH)
    assert tl.commands() == [] and all(not a.flags & AudioFlags.INTERRUPTIBLE for a in tl.audio())


def test_end_of_turn_waits_for_silence_and_a_short_pause_does_not_end_it() -> None:
    tl = Timeline(end_of_turn_ms=200)
    tl.event(EventKind.SPEECH_START)
    tl.frames(20, SPEECH)
    tl.event(EventKind.SPEECH_STOP)
    tl.frames(5)  # 100 ms pause
    tl.event(EventKind.SPEECH_START)
    tl.frames(10, SPEECH)
    assert tl.audio() == []
    tl.event(EventKind.SPEECH_STOP)
    tl.frames(9)
    assert tl.audio() == []
    tl.frames(2)
    assert tl.tc.state is TurnState.SPEAKING and tl.audio()  # the echo of the whole turn


def test_hold_freezes_and_resume_continues_the_same_utterance() -> None:
    tl = Timeline()
    tl.event(EventKind.STARTED)
    tl.frames(2)
    sent = len(tl.audio())
    tl.event(EventKind.HOLD)
    tl.frames(50, SPEECH)  # music on hold / noise: neither listened to nor answered
    tl.event(EventKind.SPEECH_START)
    assert len(tl.audio()) == sent and tl.tc.state is TurnState.HELD
    tl.event(EventKind.RESUME)
    assert tl.tc.state is TurnState.SPEAKING
    tl.frames(1)
    assert len(tl.audio()) == sent + 1 and tl.audio()[-1].utterance == 1


def test_dtmf_transfer_digit_asks_for_a_transfer_and_others_are_answered() -> None:
    tl = Timeline()
    tl.event(EventKind.DTMF, digit="5", duration_ms=100)
    assert tl.tc.state is TurnState.SPEAKING
    tl.event(EventKind.DTMF, digit="0", duration_ms=100)
    cmd = [o for o in tl.out if isinstance(o, Command)][0]
    assert cmd.kind is CommandKind.TRANSFER and cmd.target == "sip:op@pbx"
