"""The vocoder's phase-accumulating head: streaming equals offline, and a steady input no longer
repeats every model frame."""

from __future__ import annotations

import dataclasses

import torch

from engine.model.config import preset
from engine.model.model import SpeechModel


def _model(accumulate: bool) -> SpeechModel:
    torch.manual_seed(0)
    cfg = preset("tiny")
    cfg.vocoder = dataclasses.replace(cfg.vocoder, phase_accumulate=accumulate)
    return SpeechModel(cfg)


def test_frame_by_frame_equals_one_call() -> None:
    model = _model(True)
    codes = torch.randint(0, model.cfg.encoder.codebook_size, (2, 40, model.cfg.encoder.n_codebooks))
    whole, _ = model.vocode(codes)
    state, parts = None, []
    for t in range(codes.shape[1]):
        pcm, state = model.vocode(codes[:, t : t + 1], state)
        parts.append(pcm)
    assert torch.allclose(torch.cat(parts, 1), whole, atol=1e-5)


def _frame_repeat(model: SpeechModel) -> float:
    """Correlation of the audio with itself one model frame later, on one code held for 2 s."""
    codes = torch.full((1, 25, model.cfg.encoder.n_codebooks), 7)
    with torch.no_grad():
        pcm, _ = model.vocode(codes)
    x = pcm[0, 5 * model.cfg.frame_samples :]
    f = model.cfg.frame_samples
    a, b = x[:-f], x[f:]
    return float((a @ b) / (a.norm() * b.norm()))


def test_a_held_code_repeats_every_frame_unless_phases_accumulate() -> None:
    assert _frame_repeat(_model(False)) > 0.99  # absolute phases: the same frame over and over
    assert _frame_repeat(_model(True)) < 0.9  # bin phases advance: not a copy of the last frame
