"""Per-slot streaming state under exec and reset masks (engine/model/model.py, engine/batch/scheduler.py).

Comparing outputs alone misses a broken encoder mask: the RVQ codes barely move when a frozen
row's convolution contexts are overwritten, so the LM and vocoder see the same codes. These
tests compare the state tensors themselves: a row whose exec flag is off keeps every state
tensor bit for bit, even while it is handed real audio; a row stepped around a freeze equals a
row that never saw those ticks; a row reset mid-stream equals a fresh slot; and the encoder's
streamed state equals the offline encoder's, whatever the speaking flags.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from engine.batch.scheduler import BatchScheduler
from engine.model.config import preset
from engine.model.model import EVENT_NONE, TEXT_PAD, SpeechModel, StepInputs, StepOutputs, StreamState
from tests.conftest import DATA
from tests.support.audio import read_wav

FRAMES = 12
A, B = 0, 1  # the two rows of the batch


@pytest.fixture(scope="module")
def model() -> SpeechModel:
    torch.set_num_threads(1)
    return SpeechModel(preset("tiny"))


def speech(model: SpeechModel, wav: str, frames: int, offset: int = 8000) -> Tensor:
    """`frames` model frames of speech (the recordings start with 0.5 s of silence)."""
    pcm, _ = read_wav(DATA / wav)
    n = frames * model.cfg.frame_samples
    x = np.resize(pcm.astype(np.float32) / 32768, offset + n)[offset:]
    return torch.from_numpy(x.copy()).view(frames, -1)


def speaking(i: int) -> bool:
    return i >= 3  # silent at first: the encoder must stream whether or not the agent speaks


def step(model: SpeechModel, st: StreamState, pcm: Tensor, run: list[bool],
         speak: list[bool]) -> tuple[StreamState, StepOutputs]:
    n = len(run)
    inp = StepInputs(pcm, torch.full((n,), TEXT_PAD), torch.full((n,), EVENT_NONE), torch.tensor(speak),
                     torch.tensor(run))
    return model.step(st, inp)


def row(st: StreamState, i: int) -> list[Tensor]:
    """Every state tensor of one slot, in a fixed order (encoder contexts first)."""
    sub = st.rows(torch.tensor([i]))
    return [*sub.enc, sub.lm_k, sub.lm_v, sub.lm_pos, sub.prev_agent, *sub.voc, sub.speaker, sub.prosody]


def identical(a: list[Tensor], b: list[Tensor]) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


def close(a: list[Tensor], b: list[Tensor], atol: float = 1e-5) -> None:
    assert len(a) == len(b)
    for k, (x, y) in enumerate(zip(a, b)):
        diff = (x.float() - y.float()).abs().max()
        assert torch.allclose(x.float(), y.float(), atol=atol), f"state tensor {k} differs by {diff}"


def single_run(model: SpeechModel, pcm: Tensor) -> tuple[list[list[Tensor]], list[StepOutputs]]:
    """One slot stepped on every frame of `pcm`: its state after each step, and its outputs."""
    st, states, outs = model.init_state(1), [], []
    for i in range(pcm.shape[0]):
        st, out = step(model, st, pcm[i : i + 1], [True], [speaking(i)])
        states.append(row(st, 0))
        outs.append(out)
    return states, outs


def test_the_streamed_encoder_state_equals_the_offline_encoders(model: SpeechModel) -> None:
    pcm = speech(model, "hours_joe_16k.wav", FRAMES)
    states, outs = single_run(model, pcm)
    enc_layers = len(model.init_state(1).enc)
    for i in range(FRAMES):  # after every step, listening (not speaking) or speaking
        codes, _, offline = model.encode(pcm[: i + 1].reshape(1, -1))
        close(states[i][:enc_layers], offline)
        assert torch.equal(outs[i].caller_codes[0], codes[0, -1])


def test_a_frozen_row_keeps_its_state_and_continues_as_if_the_ticks_never_happened(model: SpeechModel) -> None:
    own, other = speech(model, "hours_joe_16k.wav", FRAMES), speech(model, "person_f3_16k.wav", FRAMES + 4)
    intruder = speech(model, "book_joe_16k.wav", 4)  # what A is handed while frozen: it must not hear it
    frozen = range(4, 8)  # ticks of B alone
    st, a_outs, a_i = model.init_state(2), [], 0
    before: list[Tensor] = []
    for tick in range(FRAMES + len(frozen)):
        run_a = tick not in frozen
        if tick == frozen.start:
            before = row(st, A)
        pcm_a = own[a_i] if run_a else intruder[tick - frozen.start]
        st, out = step(model, st, torch.stack([pcm_a, other[tick]]), [run_a, True], [speaking(a_i), speaking(tick)])
        if run_a:
            a_outs.append(out)
            a_i += 1
        elif tick == frozen.stop - 1:
            assert identical(row(st, A), before), "a frozen row's state changed (encoder contexts first)"

    ref_states, ref_outs = single_run(model, own)
    close(row(st, A), ref_states[-1])
    for got, ref in zip(a_outs, ref_outs):
        assert torch.equal(got.caller_codes[A], ref.caller_codes[0])
        assert torch.allclose(got.logits[A], ref.logits[0], atol=1e-4)
        assert torch.allclose(got.pcm[A], ref.pcm[0], atol=1e-4)
    b_states, _ = single_run(model, other)
    close(row(st, B), b_states[-1])


def test_a_row_reset_mid_stream_equals_a_fresh_slot(model: SpeechModel) -> None:
    first, second = speech(model, "hours_joe_16k.wav", 6), speech(model, "book_joe_16k.wav", 6)
    other = speech(model, "person_f3_16k.wav", 12)
    st = model.init_state(2)
    for tick in range(6):
        st, _ = step(model, st, torch.stack([first[tick], other[tick]]), [True, True], [speaking(tick)] * 2)
    b_before = row(st, B)
    model.reset_rows(st, torch.tensor([A]))
    assert identical(row(st, A), row(model.init_state(1), 0)), "reset must zero the whole row"
    assert identical(row(st, B), b_before), "reset of A touched B"
    for tick in range(6):
        st, _ = step(model, st, torch.stack([second[tick], other[6 + tick]]), [True, True],
                     [speaking(tick), speaking(6 + tick)])
    fresh_states, _ = single_run(model, second)
    close(row(st, A), fresh_states[-1])
    b_states, _ = single_run(model, other)
    close(row(st, B), b_states[-1])


@pytest.mark.parametrize("full_batch", [False, True], ids=["gathered", "masked"])
def test_a_frozen_scheduler_slot_keeps_its_state_bit_for_bit(model: SpeechModel, full_batch: bool) -> None:
    sched = BatchScheduler(model, 2)
    sched.full_batch = full_batch
    audio = {A: speech(model, "hours_joe_16k.wav", 10), B: speech(model, "person_f3_16k.wav", 10)}
    for slot in (A, B):
        sched.join(slot)
        sched.set_speaking(slot, True)

    def tick(i: int) -> None:
        for slot in (A, B):
            pcm = (audio[slot][i].numpy() * 32767).astype(np.int16).tobytes()
            for k in range(4):
                sched.push(slot, pcm[k * 640 : (k + 1) * 640])
        assert sched.tick() == (1 if sched.slots[A].frozen else 2)

    for i in range(3):
        tick(i)
    held = row(sched.state, A)
    sched.freeze(A)
    for i in range(3, 7):
        tick(i)
    assert identical(row(sched.state, A), held)
    sched.freeze(A, False)
    steps_b = sched.slots[B].steps
    tick(7)
    assert sched.slots[A].steps == 4 and sched.slots[B].steps == steps_b + 1
    assert not identical(row(sched.state, A), held), "a thawed slot steps again"
