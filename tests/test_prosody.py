"""Prosody controls: the streaming pitch shifter and the scheduler's rate and pitch per slot."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.batch.scheduler import BatchScheduler
from engine.data.voices import read_wav
from engine.model.checkpoint import load_checkpoint
from engine.model.config import preset
from engine.model.model import SpeechModel
from engine.model.pitch import PitchShifter, semitones_to_ratio
from gateway.bench.model_prosody import median_f0, shifted
from gateway.config import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data"
AGENT = REPO_ROOT / "engine" / "model" / "weights" / "agent"


def test_streaming_equals_one_call() -> None:
    x = read_wav(DATA / "long_joe_16k.wav")[:32000]
    whole = PitchShifter(semitones_to_ratio(2)).process(x)
    stream = PitchShifter(semitones_to_ratio(2))
    parts = np.concatenate([stream.process(x[i : i + 640]) for i in range(0, x.size, 640)])
    assert np.array_equal(whole, parts)


@pytest.mark.parametrize("semitones", [-2.0, 2.0, 4.0])
def test_pitch_moves_by_what_was_asked_and_duration_stays(semitones: float) -> None:
    x = read_wav(DATA / "long_joe_16k.wav")
    y = shifted(x, semitones)
    asked = semitones_to_ratio(semitones) - 1.0
    measured = median_f0([y]) / median_f0([x]) - 1.0
    assert abs(measured - asked) <= 0.25 * abs(asked), (measured, asked)
    assert y.size == x.size
    k = x.size // 1600 * 1600
    ex = np.abs(x[:k].astype(float)).reshape(-1, 1600).mean(1)
    ey = np.abs(y[:k].astype(float)).reshape(-1, 1600).mean(1)
    assert np.corrcoef(ex, ey)[0, 1] > 0.9  # the loudness contour stays where it was: timing kept


def test_a_pitched_slot_plays_its_neutral_audio_shifted() -> None:
    torch.set_num_threads(1)
    model = SpeechModel(preset("tiny"))
    ratio = semitones_to_ratio(3)
    pcm = read_wav(DATA / "hours_joe_16k.wav")[: 16 * 640].tobytes()

    def played(prosody: tuple[float, float, float, float]) -> tuple[np.ndarray, BatchScheduler]:
        torch.manual_seed(0)  # the same sampled codes in both runs
        sched = BatchScheduler(model, 1)
        sched.join(0, prosody=prosody)
        sched.set_speaking(0, True)
        sched.push(0, pcm)
        while sched.tick():
            pass
        return np.frombuffer(b"".join(f for o in sched.take(0) for f in o.frames), np.int16), sched

    neutral, _ = played((1.0, 1.0, 0.0, 0.0))
    pitched, sched = played((1.0, ratio, 0.0, 0.0))
    reference = PitchShifter(ratio).process(neutral)
    assert neutral.size == pitched.size > 0
    assert np.array_equal(pitched, reference)
    assert torch.equal(sched.state.prosody[0, :2], torch.ones(2))  # the LM's own input stays neutral


def test_speaking_rate_lays_the_reply_out_denser() -> None:
    sched = BatchScheduler(load_checkpoint(AGENT), 2)
    text = "We are open from eight in the morning until six in the evening."
    sched.join(0)
    sched.join(1, prosody=(1.25, 1.0, 0.0, 0.0))
    sched.say(0, text)
    sched.say(1, text)
    ratio = len(sched.slots[1].text) / len(sched.slots[0].text)
    assert abs(ratio - 1 / 1.25) < 0.05, ratio
