"""The piecewise matcher the call tests rely on: tolerant of playout shifts, strict about lost audio."""

from __future__ import annotations

import numpy as np

from tests.support.audio import piecewise_match


def _speechlike(seconds: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(seconds * 16000)
    # Flat noise is the hardest case: a shifted part costs correlation in proportion to its length.
    return (0.05 * rng.standard_normal(n) * 32767).astype(np.int16)


def _with_shift(sent: np.ndarray, at: int, shift: int) -> np.ndarray:
    """What a jitter buffer that inserts `shift` samples of silence at `at` plays out."""
    lead = np.zeros(4000, dtype=np.int16)
    return np.concatenate([lead, sent[:at], np.zeros(shift, dtype=np.int16), sent[at:]])


def test_a_shift_anywhere_inside_a_piece_still_matches() -> None:
    sent = _speechlike(1.5)
    for frac in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8):
        heard = _with_shift(sent, 8000 + int(frac * 8000), 320)
        match = piecewise_match(sent, heard)
        assert match.found(0.8) == 1.0, (frac, match.describe())
        assert match.in_order(slack=400)


def test_missing_or_replaced_audio_fails() -> None:
    sent = _speechlike(1.5)
    half_gone = _with_shift(sent, 0, 0).copy()
    half_gone[4000 + 8000 + 4000 : 4000 + 16000] = 0
    assert min(piecewise_match(sent, half_gone).peaks) < 0.8
    noise = _speechlike(3.0, seed=7)
    assert piecewise_match(sent, noise).found(0.8) == 0.0
