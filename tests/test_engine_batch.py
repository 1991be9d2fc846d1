"""The batch scheduler: a batch of N equals N single runs; join/leave/reset/freeze touch one slot only."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from engine.batch.scheduler import BatchScheduler, SlotOutput
from engine.model.config import preset
from engine.model.model import SpeechModel
from tests.conftest import DATA
from tests.support.audio import read_wav

FRAME_BYTES = 640


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    torch.set_num_threads(1)
    return SpeechModel(preset("tiny"))


@dataclass
class Session:
    """A scripted caller: its own audio, when its agent speaks, what it is told to say."""

    wav: str
    offset: int
    speak_from: int = 2  # tick
    text: str = ""
    prosody: tuple[float, float, float, float] = (1.0, 1.0, 0.0, 0.0)
    cursor: int = 0  # 20 ms frames pushed so far
    out: list[SlotOutput] = field(default_factory=list)

    def audio(self) -> bytes:
        pcm, _ = read_wav(DATA / self.wav)
        return pcm[self.offset :].tobytes()


SESSIONS = [
    Session("hours_joe_16k.wav", 0, speak_from=1, text="hello"),
    Session("book_joe_16k.wav", 3200, speak_from=3, prosody=(1.3, 0.8, 0.2, 0.0)),
    Session("person_f3_16k.wav", 800, speak_from=0, text="one two three"),
]


def drive(sched: BatchScheduler, sessions: dict[int, Session], ticks: int,
          actions: dict[int, list[tuple[str, int]]] | None = None) -> None:
    """Every tick each live slot pushes four 20 ms frames (unless frozen), then the scheduler steps."""
    audio = {slot: s.audio() for slot, s in sessions.items()}
    for slot, s in sessions.items():
        sched.join(slot, prosody=s.prosody)
        if s.text:
            sched.say(slot, s.text)
    for tick in range(ticks):
        for what, slot in (actions or {}).get(tick, []):
            if what == "freeze":
                sched.freeze(slot, True)
            elif what == "thaw":
                sched.freeze(slot, False)
            elif what == "reset":
                sched.reset(slot)
            elif what == "leave":
                sched.leave(slot)
                del sessions[slot]
        for slot, s in sessions.items():
            sched.set_speaking(slot, tick >= s.speak_from)
            if sched.slots[slot].frozen:
                continue
            for _ in range(4):
                start = s.cursor * FRAME_BYTES
                sched.push(slot, audio[slot][start : start + FRAME_BYTES])
                s.cursor += 1
        sched.tick()
        for slot, s in sessions.items():
            s.out += sched.take(slot)


def fresh(sessions: list[Session]) -> list[Session]:
    return [Session(s.wav, s.offset, s.speak_from, s.text, s.prosody) for s in sessions]


def same(a: list[SlotOutput], b: list[SlotOutput]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert len(x.frames) == len(y.frames)
        pa = np.frombuffer(b"".join(x.frames), np.int16).astype(int)
        pb = np.frombuffer(b"".join(y.frames), np.int16).astype(int)
        assert np.abs(pa - pb).max(initial=0) <= 2
        assert abs(x.caller_turn_over - y.caller_turn_over) < 1e-4 and abs(x.reply_over - y.reply_over) < 1e-4


@pytest.mark.parametrize("full_batch", [False, True], ids=["gathered", "masked"])
def test_a_batch_equals_single_runs_slot_by_slot(model: SpeechModel, full_batch: bool) -> None:
    ticks = 12
    batched = dict(zip((0, 2, 3), fresh(SESSIONS)))  # slot 1 stays empty
    sched = BatchScheduler(model, 4)
    sched.full_batch = full_batch
    drive(sched, batched, ticks)
    for s in fresh(SESSIONS):
        alone = {0: s}
        drive(BatchScheduler(model, 1), alone, ticks)
        other = next(b for b in batched.values() if b.wav == s.wav)
        assert len(other.out) == ticks
        assert sum(len(o.frames) for o in other.out) == 4 * (ticks - s.speak_from)
        same(other.out, s.out)


@pytest.mark.parametrize("full_batch", [False, True], ids=["gathered", "masked"])
def test_reset_freeze_and_leave_leave_the_other_slots_unchanged(model: SpeechModel, full_batch: bool) -> None:
    ticks = 12
    base = dict(enumerate(fresh(SESSIONS)))
    drive(BatchScheduler(model, 3), base, ticks)
    varied = dict(enumerate(fresh(SESSIONS)))
    actions = {3: [("freeze", 2)], 6: [("thaw", 2), ("reset", 1)], 9: [("leave", 2)]}
    kept = varied[2]
    sched = BatchScheduler(model, 3)
    sched.full_batch = full_batch  # masked: the frozen row is computed and its result thrown away
    drive(sched, varied, ticks, actions)
    same(varied[0].out, base[0].out)  # untouched by its neighbours' reset, hold and hang-up
    same(varied[1].out[:6], base[1].out[:6])  # until its own reset
    same(kept.out[:3], base[2].out[:3])
    same(kept.out[3:6], base[2].out[3:6])  # frozen for 3 ticks: it continues exactly where it was
    assert len(kept.out) == 6  # 3 before the hold, 3 after, none while frozen or after leaving

    # after the reset, slot 1 behaves like a new session started on the audio it is fed from then on
    restarted = fresh(SESSIONS)[1]
    restarted.offset += 6 * 4 * 320
    restarted.speak_from -= 6
    drive(BatchScheduler(model, 1), {0: restarted}, ticks - 6)
    prosody_kept = restarted.out  # join() set the same prosody; reset keeps conditioning
    same(varied[1].out[6:], prosody_kept)
    assert not _close(varied[1].out[6:], base[1].out[6:]), "the reset must have changed slot 1"


def _close(a: list[SlotOutput], b: list[SlotOutput]) -> bool:
    try:
        same(a, b)
        return True
    except AssertionError:
        return False


def test_a_slot_that_falls_behind_catches_up_in_one_tick(model: SpeechModel) -> None:
    sched = BatchScheduler(model, 2)
    sched.join(0)
    sched.join(1)
    pcm = bytes(FRAME_BYTES)
    for _ in range(8):
        sched.push(0, pcm)  # two model frames waiting
    for _ in range(4):
        sched.push(1, pcm)
    assert sched.tick() == 3
    assert len(sched.take(0)) == 2 and len(sched.take(1)) == 1
    assert sched.tick() == 0  # nothing left: no step without a whole frame


@pytest.mark.gpu
def test_cuda_graph_and_bf16_match_eager_float32() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    ref_model = SpeechModel(preset("tiny")).cuda()
    fast_model = SpeechModel(preset("tiny")).cuda()
    fast_model.lm_in_bf16()
    ref = dict(enumerate(fresh(SESSIONS)))
    drive(BatchScheduler(ref_model, 4), ref, 8)
    fast = dict(enumerate(fresh(SESSIONS)))
    drive(BatchScheduler(fast_model, 4, cuda_graphs=True), fast, 8)
    for slot in ref:
        a = np.frombuffer(b"".join(f for o in ref[slot].out for f in o.frames), np.int16)
        b = np.frombuffer(b"".join(f for o in fast[slot].out for f in o.frames), np.int16)
        assert a.size == b.size and a.size > 0
