"""Built-in prompts: short synthetic signals an agent can play without any model.

They are deliberately tonal so tests can recognise them by frequency or correlation.
A greeting may also name a 16 kHz mono int16 WAV file.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from engine.session import SAMPLE_RATE

CHIME_HZ = (523.25, 659.25, 783.99)  # C5 E5 G5
DTMF_HZ = {
    "1": (697, 1209), "2": (697, 1336), "3": (697, 1477), "A": (697, 1633),
    "4": (770, 1209), "5": (770, 1336), "6": (770, 1477), "B": (770, 1633),
    "7": (852, 1209), "8": (852, 1336), "9": (852, 1477), "C": (852, 1633),
    "*": (941, 1209), "0": (941, 1336), "#": (941, 1477), "D": (941, 1633),
}  # fmt: skip


def tone(freqs: tuple[float, ...], ms: int, level_dbfs: float = -12.0, fade_ms: int = 10) -> np.ndarray:
    n = SAMPLE_RATE * ms // 1000
    t = np.arange(n) / SAMPLE_RATE
    x = sum(np.sin(2 * np.pi * f * t) for f in freqs) / len(freqs)
    ramp = min(n // 2, SAMPLE_RATE * fade_ms // 1000)
    env = np.ones(n)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[n - ramp :] = np.linspace(1, 0, ramp)
    amp = 32767 * 10 ** (level_dbfs / 20) * np.sqrt(2)
    return (x * env * amp).astype(np.int16)


def chime() -> np.ndarray:
    return np.concatenate([tone((f,), 200) for f in CHIME_HZ])


def long_prompt(seconds: float = 8.0) -> np.ndarray:
    """A continuous melody for tests that barge in on the agent."""
    notes = (392.0, 440.0, 493.88, 523.25, 587.33, 659.25)
    parts, total, i = [], 0, 0
    while total < seconds * SAMPLE_RATE:
        parts.append(tone((notes[i % len(notes)],), 250, fade_ms=5))
        total += parts[-1].size
        i += 1
    return np.concatenate(parts)


def dtmf_tone(digit: str, ms: int = 120) -> np.ndarray:
    return tone(DTMF_HZ[digit.upper()], ms, level_dbfs=-10.0)


def load_prompt(name: str) -> np.ndarray | None:
    if not name:
        return None
    if name == "chime":
        return chime()
    if name == "long":
        return long_prompt()
    path = Path(name)
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != SAMPLE_RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: prompts must be 16 kHz mono 16-bit WAV")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()
