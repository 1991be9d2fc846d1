"""The worker's per-call media pieces on generated signals: VAD, playout queue, wire format."""

from __future__ import annotations

import numpy as np
import pytest

from engine import wire
from engine.session import (
    FRAME_BYTES,
    FRAME_SAMPLES,
    AgentAudio,
    AudioFlags,
    Command,
    CommandKind,
    EventKind,
    PlayoutState,
    SessionEvent,
    SessionInfo,
)
from gateway.media.playout import PlayoutQueue
from gateway.media.vad import EnergyVad, VadEdge, frame_dbfs


def sine(level_dbfs: float, n: int = FRAME_SAMPLES, hz: float = 300.0) -> np.ndarray:
    amp = 32767 * 10 ** (level_dbfs / 20) * np.sqrt(2)
    return (amp * np.sin(2 * np.pi * hz * np.arange(n) / 16000)).astype(np.int16)


def frame(utt: int, last: bool = False, interruptible: bool = True) -> AgentAudio:
    flags = AudioFlags.INTERRUPTIBLE if interruptible else AudioFlags.NONE
    if last:
        flags |= AudioFlags.END_OF_UTTERANCE
    return AgentAudio(bytes([utt]) * FRAME_BYTES, utt, flags)


def test_frame_level_of_a_known_sine() -> None:
    assert frame_dbfs(sine(-20.0)) == pytest.approx(-20.0, abs=0.2)
    assert frame_dbfs(np.zeros(FRAME_SAMPLES, np.int16)) < -100


def test_vad_needs_start_ms_of_speech_and_stop_ms_of_silence() -> None:
    vad = EnergyVad(threshold_dbfs=-40, start_ms=60, stop_ms=200)
    loud, quiet = sine(-20), sine(-60)
    edges = [vad.update(loud) for _ in range(5)]
    assert edges == [None, None, VadEdge.START, None, None]  # third 20 ms frame = 60 ms
    edges = [vad.update(quiet) for _ in range(12)]
    assert edges.index(VadEdge.STOP) == 9 and edges.count(VadEdge.STOP) == 1  # 10th frame = 200 ms


def test_vad_ignores_a_blip_shorter_than_start_ms() -> None:
    vad = EnergyVad(threshold_dbfs=-40, start_ms=60, stop_ms=200)
    seq = [sine(-20), sine(-20), sine(-60), sine(-20), sine(-60)]
    assert all(vad.update(f) is None for f in seq)


def test_playout_plays_in_order_and_counts_underruns_only_inside_an_utterance() -> None:
    q = PlayoutQueue()
    assert q.pop() is None and q.underruns == 0  # nothing to say is not an underrun
    q.push(frame(1))
    assert q.pop() == frame(1).pcm
    assert q.pop() is None and q.underruns == 1  # mid-utterance, engine late
    q.push(frame(1, last=True))
    assert q.pop() is not None
    assert q.finished_utterance() == 1
    assert q.pop() is None and q.underruns == 1


def test_playout_pause_keeps_position_and_resume_continues() -> None:
    q = PlayoutQueue()
    for _ in range(5):
        q.push(frame(1))
    q.pop(), q.pop()
    pos = q.pause()
    assert (pos.utterance, pos.position_ms) == (1, 40)
    assert q.pop() is None and q.underruns == 0  # paused is not an underrun
    q.resume()
    assert q.pop() is not None and q.position().position_ms == 60


def test_playout_flush_reports_heard_position_and_drops_late_frames() -> None:
    q = PlayoutQueue()
    for _ in range(4):
        q.push(frame(2))
    q.pop()
    q.pause()
    pos = q.flush()
    assert (pos.utterance, pos.position_ms) == (2, 20)
    q.push(frame(2))  # already in flight when the engine flushed
    assert q.pop() is None
    q.push(frame(3))
    assert q.pop() == frame(3).pcm


def test_playout_hold_pauses_without_losing_frames() -> None:
    q = PlayoutQueue()
    q.push(frame(1))
    q.push(frame(1, last=True))
    q.hold(True)
    assert q.pop() is None
    q.hold(False)
    assert q.pop() is not None and q.pop() is not None and q.underruns == 0


def test_wire_round_trips_every_message_type() -> None:
    pcm = bytes(range(256)) * 2 + bytes(FRAME_BYTES - 512)
    info = SessionInfo("abc@host", "1000", "sip:x@y", {"agent": "echo", "ring_ms": 0})
    assert wire.decode(wire.encode_open(7, info)) == (wire.MsgType.OPEN, wire.NO_SLOT, 7, info)
    assert wire.decode(wire.encode_opened(7, 3)) == (wire.MsgType.OPENED, 3, 7, "")
    assert wire.decode(wire.encode_frame(3, 1.5, pcm)) == (wire.MsgType.FRAME, 3, 1.5, pcm)
    ev = SessionEvent(EventKind.PLAYOUT, 2.0, "", 0, PlayoutState.FLUSHED, 4, 380)
    assert wire.decode(wire.encode_event(3, ev)) == (wire.MsgType.EVENT, 3, ev)
    dtmf = SessionEvent(EventKind.DTMF, 2.5, "#", 160)
    assert wire.decode(wire.encode_event(3, dtmf))[2] == dtmf
    audio = AgentAudio(pcm, 9, AudioFlags.INTERRUPTIBLE | AudioFlags.END_OF_UTTERANCE)
    assert wire.decode(wire.encode_audio(3, audio)) == (wire.MsgType.AUDIO, 3, audio)
    cmd = Command(CommandKind.TRANSFER, 3.0, "sip:op@pbx", "caller asked")
    assert wire.decode(wire.encode_command(3, cmd)) == (wire.MsgType.COMMAND, 3, cmd)


@pytest.mark.parametrize("msg", [b"", b"\x03", b"\x03\x00\x00" + bytes(8) + bytes(10), b"\x63\x00\x00", b"\x04\x01\x00\x99"])
def test_wire_rejects_garbage_with_an_exception(msg: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode(msg)
