"""Small audio helpers for tests: WAV I/O, levels, correlation, test signals.

All signals are mono numpy int16 (or float in [-1, 1] where noted).
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]


def read_wav(path: str | Path) -> tuple[Int16Array, int]:
    """Read a 16-bit PCM WAV; multi-channel input is averaged to mono. Returns (samples, rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM is supported, got {8 * w.getsampwidth()}-bit")
        rate = w.getframerate()
        channels = w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels > 1:
        data = data.reshape(-1, channels).mean(axis=1).astype(np.int16)
    return data.astype(np.int16, copy=False), rate


def write_wav(path: str | Path, samples: npt.ArrayLike, rate: int = 16000) -> None:
    """Write mono 16-bit PCM. Float input is taken as [-1, 1] full scale."""
    arr = np.asarray(samples)
    if arr.dtype.kind == "f":
        arr = np.clip(np.round(arr * 32767.0), -32768, 32767)
    pcm = arr.astype("<i2").tobytes()
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def resample(samples: Int16Array, rate_in: int, rate_out: int) -> Int16Array:
    if rate_in == rate_out:
        return samples
    import soxr

    out: Int16Array = soxr.resample(samples, rate_in, rate_out).astype(np.int16)
    return out


def to_float(samples: npt.ArrayLike) -> FloatArray:
    arr = np.asarray(samples)
    if arr.dtype.kind in "iu":
        return arr.astype(np.float64) / 32768.0
    return arr.astype(np.float64)


def rms(samples: npt.ArrayLike) -> float:
    """RMS relative to full scale (1.0 = full-scale square wave)."""
    x = to_float(samples)
    if x.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(x * x)))


def dbfs(samples: npt.ArrayLike) -> float:
    """RMS level in dBFS; -inf-safe floor at -120 dB."""
    return float(20.0 * np.log10(max(rms(samples), 1e-6)))


def db_to_gain(db: float) -> float:
    return float(10.0 ** (db / 20.0))


@dataclass(frozen=True)
class Correlation:
    peak: float  # normalized cross-correlation at the best lag, in [-1, 1]
    lag: int  # samples; positive = `received` is delayed relative to `reference`

    def lag_ms(self, rate: int) -> float:
        return 1000.0 * self.lag / rate


def xcorr(reference: npt.ArrayLike, received: npt.ArrayLike, max_lag: int | None = None) -> Correlation:
    """Normalized cross-correlation peak and lag via FFT.

    Normalization uses the energy of `reference` and of the overlapping window of
    `received` at the chosen lag, so a clean delayed copy inside a longer recording
    (with silence around it) still gives a peak near 1.0.
    """
    a = to_float(reference)
    b = to_float(received)
    a = a - a.mean()
    b = b - b.mean()
    n = len(a) + len(b) - 1
    nfft = 1 << (n - 1).bit_length()
    spec = np.fft.rfft(b, nfft) * np.conj(np.fft.rfft(a, nfft))
    full = np.fft.irfft(spec, nfft)
    # full[k] = sum_t b[t + k] * a[t]; negative lags wrap to the end.
    lags = np.concatenate([np.arange(0, len(b)), np.arange(-(len(a) - 1), 0)])
    vals = np.concatenate([full[: len(b)], full[nfft - (len(a) - 1) :]])
    if max_lag is not None:
        keep = np.abs(lags) <= max_lag
        lags, vals = lags[keep], vals[keep]
    # Energy of b over the window [k, k + len(a)) for each lag k.
    csum = np.concatenate([[0.0], np.cumsum(b * b)])
    lo = np.clip(lags, 0, len(b))
    hi = np.clip(lags + len(a), 0, len(b))
    b_energy = csum[hi] - csum[lo]
    a_energy = float(np.dot(a, a))
    denom = np.sqrt(np.maximum(a_energy * b_energy, 1e-20))
    norm = vals / denom
    # Ignore lags where `received` overlaps only a sliver of `reference`.
    overlap = hi - lo
    norm[overlap < min(len(a), len(b)) // 4] = 0.0
    best = int(np.argmax(np.abs(norm)))
    return Correlation(peak=float(norm[best]), lag=int(lags[best]))


@dataclass(frozen=True)
class PiecewiseMatch:
    """How well each voiced piece of a reference is found, in order, inside a received signal."""

    peaks: list[float]  # best normalized correlation of each voiced piece
    lags: list[int]  # where each piece was found (samples, relative to the piece's own start)

    def found(self, min_peak: float) -> float:
        """Fraction of voiced pieces found with at least `min_peak` correlation."""
        return sum(p >= min_peak for p in self.peaks) / max(len(self.peaks), 1)

    def in_order(self, slack: int) -> bool:
        """Pieces arrive in the order they were sent: a lag never falls back by more than `slack`."""
        return all(b >= a - slack for a, b in zip(self.lags, self.lags[1:]))

    def describe(self) -> str:
        return " ".join(f"{p:.2f}@{lag}" for p, lag in zip(self.peaks, self.lags))


def piecewise_match(
    reference: npt.ArrayLike, received: npt.ArrayLike, piece: int = 8000, min_dbfs: float = -40.0
) -> PiecewiseMatch:
    """Correlate each voiced `piece`-sample chunk of `reference` with `received` separately.

    A whole-signal correlation drops to ~0.5 when an adaptive jitter buffer shifts the
    audio by a frame halfway through (legitimate playout adaptation); per piece, only
    audio that is missing, garbled or reordered scores low. A piece a shift falls inside
    is scored at its best split point (eighths of the piece): the worse of the two parts,
    each of which can then lie wholly on one side of the shift.
    """
    ref = to_float(reference)
    peaks: list[float] = []
    lags: list[int] = []
    for start in range(0, len(ref) - piece + 1, piece):
        chunk = ref[start : start + piece]
        if dbfs(chunk) < min_dbfs:
            continue
        corr = xcorr(chunk, received)
        peak = corr.peak
        if peak < 0.9:
            peak = max(peak, _best_split_peak(chunk, received))
        peaks.append(peak)
        lags.append(corr.lag - start)
    return PiecewiseMatch(peaks, lags)


def _best_split_peak(chunk: FloatArray, received: npt.ArrayLike, parts: int = 8) -> float:
    best = 0.0
    for k in range(1, parts):
        cut = len(chunk) * k // parts
        best = max(best, min(xcorr(chunk[:cut], received).peak, xcorr(chunk[cut:], received).peak))
    return best


def tone(freq: float, seconds: float, rate: int = 16000, amplitude_dbfs: float = -12.0) -> Int16Array:
    t = np.arange(round(seconds * rate)) / rate
    amp = db_to_gain(amplitude_dbfs) * np.sqrt(2.0)  # so the RMS equals amplitude_dbfs
    return _to_int16(amp * np.sin(2 * np.pi * freq * t))


def chirp(
    f0: float, f1: float, seconds: float, rate: int = 16000, amplitude_dbfs: float = -12.0
) -> Int16Array:
    """Linear sine sweep; its sharp autocorrelation makes it good for lag measurement."""
    t = np.arange(round(seconds * rate)) / rate
    phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / seconds * t * t)
    amp = db_to_gain(amplitude_dbfs) * np.sqrt(2.0)
    return _to_int16(amp * np.sin(phase))


def _to_int16(x: FloatArray) -> Int16Array:
    out: Int16Array = np.round(np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16)
    return out


def silence(seconds: float, rate: int = 16000) -> Int16Array:
    return np.zeros(round(seconds * rate), dtype=np.int16)


def active_spans(
    samples: npt.ArrayLike, rate: int = 16000, threshold_dbfs: float = -45.0, frame_ms: int = 20
) -> list[tuple[float, float]]:
    """(start_s, end_s) spans whose per-frame RMS exceeds the threshold."""
    x = to_float(samples)
    hop = rate * frame_ms // 1000
    n = len(x) // hop
    if n == 0:
        return []
    frames = x[: n * hop].reshape(n, hop)
    levels = 20 * np.log10(np.maximum(np.sqrt(np.mean(frames * frames, axis=1)), 1e-6))
    spans: list[tuple[float, float]] = []
    start: int | None = None
    for i, active in enumerate(levels > threshold_dbfs):
        if active and start is None:
            start = i
        elif not active and start is not None:
            spans.append((start * hop / rate, i * hop / rate))
            start = None
    if start is not None:
        spans.append((start * hop / rate, n * hop / rate))
    return spans
