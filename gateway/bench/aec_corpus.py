"""The generated echo corpus of `talkover bench aec`: voices, echo paths, a simulated line.

Voices are offline speech from tests/data (made with piper's joe voice and espeak-ng's f3):
the agent is joe; callers are the f3 clips and joe pitch-shifted up four semitones.

An echo path is what the far phone and the network do to the audio we send: a bulk delay,
an impulse response (hybrid-like: a few ms, band-limited, dispersive; room-like: an
exponentially decaying tail, RT60 150-300 ms, i.e. a speakerphone), an echo return loss
(ERL, calibrated on the agent's speech), optionally mild saturation (soft clipping of the far
phone's loudspeaker/hybrid) and line noise. It runs streaming, 20 ms at a time, so the
benchmark can drive the real per-call chain tick by tick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

from gateway.config import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data"
AGENT_CLIPS = ("long_joe", "book_joe", "hours_joe", "person_joe")
CALLER_CLIPS = ("hours_f3", "person_f3")
SHIFTED_CLIPS = ("book_joe", "person_joe")  # pitch-shifted: a second caller voice
AGENT_LEVEL_DBFS = -20.0  # active speech level of what we send
SEMITONES = 4


class CorpusError(RuntimeError):
    pass


def read_clip(name: str) -> np.ndarray:
    """A 16 kHz clip from tests/data as float in [-1, 1]."""
    import wave

    path = DATA / f"{name}_16k.wav"
    if not path.is_file():
        raise CorpusError(f"speech clip {path} is missing (the benchmark uses the repository's tests/data)")
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != 16000 or w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise CorpusError(f"{path}: expected 16 kHz 16-bit mono")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64) / 32768.0


def speech_onset_s(x: np.ndarray, rate: int = 16000) -> float:
    """Where speech becomes audible: the first 5 ms whose level is within 30 dB of the clip's
    active level (the manifest's speech_start is the first non-zero sample, tens of ms of
    near-silence earlier for espeak-ng's soft onsets)."""
    hop = rate // 200
    n = len(x) // hop
    p = np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)
    first = int(np.argmax(10 * np.log10(p + 1e-20) >= active_level_db(x, rate) - 30))
    return first * hop / rate


def active_level_db(x: np.ndarray, rate: int = 16000) -> float:
    """Level of the active (speech) part: mean power of the 20 ms frames within 30 dB of the loudest."""
    hop = rate // 50
    n = len(x) // hop
    if n == 0:
        return -120.0
    p = np.mean(x[: n * hop].reshape(n, hop) ** 2, axis=1)
    active = p > p.max() * 1e-3
    return float(10 * np.log10(np.mean(p[active]) + 1e-20))


def at_level(x: np.ndarray, level_db: float) -> np.ndarray:
    return x * 10 ** ((level_db - active_level_db(x)) / 20)


def pitch_shift(x: np.ndarray, semitones: float) -> np.ndarray:
    """Up by resampling (tempo rises with it): a different-sounding talker from the same clip."""
    factor = 2 ** (semitones / 12)
    return np.asarray(soxr.resample(x, 16000, int(round(16000 / factor))), dtype=np.float64)


def agent_turns() -> list[np.ndarray]:
    return [at_level(read_clip(n), AGENT_LEVEL_DBFS) for n in AGENT_CLIPS]


def callers() -> list[tuple[str, np.ndarray, float]]:
    """(name, 16 kHz float clip, onset in s) for every caller voice."""
    clips = [(n, read_clip(n)) for n in CALLER_CLIPS]
    clips += [(f"{n}+{SEMITONES}st", pitch_shift(read_clip(n), SEMITONES)) for n in SHIFTED_CLIPS]
    return [(n, x, speech_onset_s(x)) for n, x in clips]


@dataclass(frozen=True)
class EchoPathSpec:
    delay_ms: int
    erl_db: float
    ir: str  # "hybrid" | "room"
    clip: bool = False  # mild saturation of the far phone
    noise_dbfs: float | None = None  # line noise at the near end
    seed: int = 1

    @property
    def name(self) -> str:
        extra = ("+clip" if self.clip else "") + ("+noise" if self.noise_dbfs is not None else "")
        return f"{self.ir} {self.delay_ms}ms ERL{self.erl_db:g}{extra}"

    @property
    def linear(self) -> bool:
        return not self.clip and self.noise_dbfs is None

    def impulse(self, rate: int) -> np.ndarray:
        rng = np.random.default_rng(self.seed)
        if self.ir == "hybrid":
            n = int(0.012 * rate)
            t = np.arange(n) / rate
            h = rng.standard_normal(n) * np.exp(-t / 0.0015)
            h[0] += 0.5
            h = np.convolve(h, np.hanning(max(3, rate // 2000)), mode="same")  # band-limit
        elif self.ir == "room":
            rt60 = 0.15 + 0.15 * rng.random()
            n = int(rt60 * rate)
            t = np.arange(n) / rate
            h = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
            h[: int(0.002 * rate)] *= 3.0  # direct sound from the loudspeaker
        else:
            raise ValueError(f"unknown impulse response kind {self.ir!r}")
        return np.asarray(h / np.sqrt(np.sum(h * h)), dtype=np.float64)


def saturate(x: np.ndarray, limit: float = 0.25) -> np.ndarray:
    """Soft clipping at ~-12 dBFS: peaks of -20 dBFS speech are squashed by several dB."""
    return np.asarray(limit * np.tanh(x / limit), dtype=np.float64)


class FrameConvolver:
    """Streaming FIR (overlap-save), one frame at a time."""

    def __init__(self, h: np.ndarray, frame: int) -> None:
        self.frame = frame
        self._keep = len(h) - 1
        self._nfft = 1 << (self._keep + frame - 1).bit_length()
        self._h = np.fft.rfft(h, self._nfft)
        self._hist = np.zeros(self._keep + frame)

    def process(self, x: np.ndarray) -> np.ndarray:
        self._hist = np.concatenate([self._hist[len(x) :], x])
        y = np.fft.irfft(np.fft.rfft(self._hist, self._nfft) * self._h, self._nfft)
        return np.asarray(y[self._keep : self._keep + len(x)], dtype=np.float64)


class EchoPath:
    """One echo path at one rate, streaming: `echo(sent_frame)` is the echo heard at the same tick."""

    def __init__(self, spec: EchoPathSpec, rate: int, frame: int, calibrate_on: np.ndarray) -> None:
        self.spec, self.rate, self.frame = spec, rate, frame
        h = spec.impulse(rate)
        probe = calibrate_on if not spec.clip else saturate(calibrate_on)
        erl_now = active_level_db(calibrate_on, rate) - active_level_db(np.convolve(probe, h)[: len(probe)], rate)
        self._h = h * 10 ** ((erl_now - spec.erl_db) / 20)
        self._conv = FrameConvolver(self._h, frame)
        self._delay = np.zeros(int(spec.delay_ms * rate / 1000))
        self._noise = self._line_noise(spec, rate)
        self._noise_at = 0

    @staticmethod
    def _line_noise(spec: EchoPathSpec, rate: int) -> np.ndarray:
        """10 s of white noise through a short low-pass (more hiss at low frequencies), at noise_dbfs."""
        if spec.noise_dbfs is None:
            return np.zeros(0)
        w = np.random.default_rng(spec.seed + 1000).standard_normal(10 * rate)
        x = np.convolve(w, 0.7 ** np.arange(20), mode="same")
        return np.asarray(x * 10 ** (spec.noise_dbfs / 20) / np.sqrt(np.mean(x * x)), dtype=np.float64)

    def echo(self, sent: np.ndarray) -> np.ndarray:
        x = saturate(sent) if self.spec.clip else sent
        if self._delay.size:
            line = np.concatenate([self._delay, x])
            x, self._delay = line[: len(sent)], line[len(sent) :]
        return self._conv.process(x)

    def noise(self, n: int) -> np.ndarray:
        if not self._noise.size:
            return np.zeros(n)
        idx = (self._noise_at + np.arange(n)) % self._noise.size
        self._noise_at = (self._noise_at + n) % self._noise.size
        return self._noise[idx]


def mulaw(x: np.ndarray, mu: float = 255.0) -> np.ndarray:
    """G.711-like μ-law companding round trip (8-bit codes), on float audio in [-1, 1]."""
    y = np.sign(x) * np.log1p(mu * np.minimum(np.abs(x), 1.0)) / np.log1p(mu)
    q = np.round(y * 127) / 127
    return np.asarray(np.sign(q) * np.expm1(np.abs(q) * np.log1p(mu)) / mu, dtype=np.float64)


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.round(x * 32768.0), -32768, 32767), dtype=np.int16)
