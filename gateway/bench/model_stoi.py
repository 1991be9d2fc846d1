"""Short-Time Objective Intelligibility (STOI), written from the published algorithm
(Taal, Hendriks, Heusdens, Jensen, IEEE TASLP 2011):

1. both signals at 10 kHz;
2. frames of 256 samples (Hann, 50 % overlap); frames of the clean signal more than 40 dB
   below its loudest frame are dropped from both signals, which are then overlap-added again;
3. 512-point DFT of those frames, grouped into 15 one-third-octave bands (lowest centre 150 Hz),
   each band's envelope = the root of its bins' summed power;
4. segments of 30 frames (384 ms): the degraded envelope is scaled to the clean one's energy and
   clipped at 15 dB above it (signal-to-distortion floor of -15 dB); the intermediate index is the
   correlation of the clean and the clipped degraded envelope;
5. STOI = the mean over bands and segments.
"""

from __future__ import annotations

import numpy as np
import soxr

STOI_RATE = 10_000
FRAME = 256
NFFT = 512
BANDS = 15
LOWEST_CENTRE_HZ = 150.0
SEGMENT = 30
DYNAMIC_RANGE_DB = 40.0
CLIP_DB = -15.0  # the lower bound of the signal-to-distortion ratio


def third_octave_matrix(rate: int = STOI_RATE, nfft: int = NFFT, bands: int = BANDS) -> np.ndarray:
    """[bands, nfft/2+1] 0/1 matrix: which DFT bins each one-third-octave band sums."""
    freqs = np.arange(nfft // 2 + 1) * rate / nfft
    k = np.arange(bands)
    lower = LOWEST_CENTRE_HZ * 2.0 ** ((2 * k - 1) / 6)
    upper = LOWEST_CENTRE_HZ * 2.0 ** ((2 * k + 1) / 6)
    matrix = np.zeros((bands, freqs.size))
    for b in range(bands):
        lo = int(np.argmin(np.abs(freqs - lower[b])))  # band edges snap to the nearest bin
        hi = int(np.argmin(np.abs(freqs - upper[b])))
        matrix[b, lo:hi] = 1.0
    return matrix


def _frames(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    hop = FRAME // 2
    n = max(0, (x.size - FRAME) // hop + 1)
    idx = np.arange(FRAME)[None, :] + hop * np.arange(n)[:, None]
    return x[idx] * window


def _overlap_add(frames: np.ndarray) -> np.ndarray:
    hop = FRAME // 2
    out = np.zeros((frames.shape[0] - 1) * hop + FRAME) if len(frames) else np.zeros(0)
    for i, f in enumerate(frames):
        out[i * hop : i * hop + FRAME] += f
    return out


def drop_silent_frames(clean: np.ndarray, degraded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    window = np.hanning(FRAME + 2)[1:-1]  # a Hann window without its zero end points
    fc, fd = _frames(clean, window), _frames(degraded, window)
    energy_db = 20 * np.log10(np.linalg.norm(fc, axis=1) + np.finfo(float).eps)
    keep = energy_db > energy_db.max(initial=-np.inf) - DYNAMIC_RANGE_DB
    return _overlap_add(fc[keep]), _overlap_add(fd[keep])


def band_envelopes(x: np.ndarray) -> np.ndarray:
    """[bands, frames] one-third-octave magnitudes of x (at 10 kHz)."""
    window = np.hanning(FRAME + 2)[1:-1]
    spec = np.fft.rfft(_frames(x, window), n=NFFT, axis=1)  # [frames, bins]
    return np.sqrt(third_octave_matrix() @ (np.abs(spec) ** 2).T)


def stoi(clean: np.ndarray, degraded: np.ndarray, rate: int = 16_000) -> float:
    """STOI of `degraded` against `clean` (same length, time-aligned), about 0 (unrelated) to 1."""
    n = min(clean.size, degraded.size)
    x = np.asarray(clean[:n], dtype=np.float64)
    y = np.asarray(degraded[:n], dtype=np.float64)
    if rate != STOI_RATE:
        x = soxr.resample(x, rate, STOI_RATE, quality="HQ")
        y = soxr.resample(y, rate, STOI_RATE, quality="HQ")
    x, y = drop_silent_frames(x, y)
    ex, ey = band_envelopes(x), band_envelopes(y)
    if ex.shape[1] < SEGMENT:
        raise ValueError(f"STOI needs at least {SEGMENT} speech frames (~0.4 s), got {ex.shape[1]}")
    clip = 1 + 10 ** (-CLIP_DB / 20)
    scores = []
    for m in range(SEGMENT, ex.shape[1] + 1):
        sx, sy = ex[:, m - SEGMENT : m], ey[:, m - SEGMENT : m]
        alpha = np.linalg.norm(sx, axis=1, keepdims=True) / (np.linalg.norm(sy, axis=1, keepdims=True) + 1e-12)
        sy = np.minimum(alpha * sy, sx * clip)
        sx = sx - sx.mean(axis=1, keepdims=True)
        sy = sy - sy.mean(axis=1, keepdims=True)
        corr = (sx * sy).sum(1) / (np.linalg.norm(sx, axis=1) * np.linalg.norm(sy, axis=1) + 1e-12)
        scores.append(corr)
    return float(np.mean(scores))
