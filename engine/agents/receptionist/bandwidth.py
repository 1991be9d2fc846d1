"""Bandwidth extension of telephone-band caller turns before pocketsphinx.

pocketsphinx's only offline acoustic model (en-us, 16 kHz) reads mel filters up to 6.8 kHz.
A telephone line carries nothing above ~3.6 kHz, and on held-out voices that mismatch alone
cost most of the recognizer's accuracy (intent accuracy 88.0 % clean vs 62.7 % for the same
lines band-limited, measured); moving the model's upper filter edge down made it worse. Noise
with the *true* envelope above 4 kHz brought it back to 85.7 %, so the missing band's envelope
is what the model needs. Here a small MLP over a few frames of narrow-band log band energies
predicts it, and noise shaped by the prediction is added above 4 kHz: a classic bandwidth
extension (envelope prediction + noise excitation) in numpy, fitted by `talkover train bwe`
(engine/train/bwe.py) on pairs of the same speech, wide band and through a telephone line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 16000
N_FFT = 512
HOP = 160
CONTEXT = 3  # frames either side: a caller turn is decoded whole, so the future is there
NB_EDGES = np.array([100, 250, 400, 550, 700, 850, 1000, 1200, 1400, 1650, 1900, 2200, 2500, 2850, 3200, 3600])
HF_EDGES = np.array([4000, 4400, 4800, 5300, 5800, 6400, 7000, 7600, 8000])
NARROWBAND_DB = -35.0  # energy above 4.2 kHz relative to the whole turn, below which a turn is narrow band
FLOOR = 1e5  # ~ the power per bin of dither at -66 dBFS: digital silence must not dominate the fit
WEIGHTS = Path(__file__).with_name("bwe.npz")

FloatArray = npt.NDArray[np.float64]


def _frames(x: FloatArray) -> FloatArray:
    """Power spectra [frames, bins] of hann-windowed frames."""
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    n = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]
    spec: FloatArray = np.abs(np.fft.rfft(x[idx] * np.hanning(N_FFT + 1)[:-1], axis=1)) ** 2
    return spec


def _band_matrix(edges: npt.NDArray[np.int64]) -> FloatArray:
    freqs = np.fft.rfftfreq(N_FFT, 1 / RATE)
    m = np.stack([(freqs >= lo) & (freqs < hi) for lo, hi in zip(edges, edges[1:])]).astype(np.float64)
    out: FloatArray = m / m.sum(1, keepdims=True)
    return out


_NB, _HF = _band_matrix(NB_EDGES), _band_matrix(HF_EDGES)


def _log_bands(power: FloatArray, bands: FloatArray) -> FloatArray:
    out: FloatArray = np.log(power @ bands.T + FLOOR)
    return out


def _inputs(nb_log: FloatArray) -> FloatArray:
    """Per frame: the narrow-band log energies of CONTEXT frames either side, centred on the
    turn's mean (so the line's level drops out) plus the frame's own level and a bias."""
    mean = nb_log.mean(0, keepdims=True)
    c = nb_log - mean
    padded = np.pad(c, ((CONTEXT, CONTEXT), (0, 0)), mode="edge")
    n = nb_log.shape[0]
    ctx = [padded[k : k + n] for k in range(2 * CONTEXT + 1)]
    level = nb_log.mean(1, keepdims=True) - mean.mean()
    return np.concatenate([*ctx, level, np.ones((n, 1))], axis=1)


def _narrowband(power: FloatArray) -> bool:
    p = power.sum(0)
    high = p[np.fft.rfftfreq(N_FFT, 1 / RATE) >= 4200].sum()
    return bool(10 * np.log10(high / max(p.sum(), 1e-9) + 1e-12) < NARROWBAND_DB)


def is_narrowband(x: npt.ArrayLike) -> bool:
    return _narrowband(_frames(np.asarray(x, dtype=np.float64)))


def training_frames(narrow: npt.NDArray[np.int16], wide: npt.NDArray[np.int16]) -> tuple[FloatArray, FloatArray]:
    """(inputs, targets) of the voiced frames of one aligned pair, telephone band and wide band:
    what `BandwidthExtender.envelope` reads and what it should predict (engine/train/bwe.py)."""
    n = min(narrow.size, wide.size)
    nb_log = _log_bands(_frames(narrow[:n].astype(np.float64)), _NB)
    hf_log = _log_bands(_frames(wide[:n].astype(np.float64)), _HF)
    voiced = nb_log.mean(1) > np.log(100 * FLOOR)  # silence says nothing about the envelope
    return _inputs(nb_log)[voiced], (hf_log - nb_log.mean(1, keepdims=True))[voiced]


@dataclass
class BandwidthExtender:
    """An MLP (ReLU between layers) that predicts each HF band's log power minus the frame's
    narrow-band mean; `layers` is [(weight [in, out], bias [out]), ...]."""

    layers: list[tuple[FloatArray, FloatArray]]

    @classmethod
    def load(cls, path: Path = WEIGHTS) -> BandwidthExtender:
        with np.load(path) as f:
            n = len([k for k in f.files if k.startswith("w")])
            return cls([(f[f"w{i}"].astype(np.float64), f[f"b{i}"].astype(np.float64)) for i in range(n)])

    def save(self, path: Path = WEIGHTS) -> None:
        arrays = {}
        for i, (w, b) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w.astype(np.float32), b.astype(np.float32)
        np.savez(path, **arrays)  # type: ignore[arg-type]

    def envelope(self, x: FloatArray, power: FloatArray | None = None) -> FloatArray:
        """Predicted log power of each HF band per frame [frames, HF bands]; `power`: x's `_frames`."""
        nb_log = _log_bands(_frames(x) if power is None else power, _NB)
        h = _inputs(nb_log)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i + 1 < len(self.layers):
                h = np.maximum(h, 0.0)
        pred: FloatArray = h + nb_log.mean(1, keepdims=True)
        return pred

    def restore(self, pcm: npt.NDArray[np.int16], seed: int = 0) -> npt.NDArray[np.int16]:
        """A narrow-band turn extended, a wide-band one as it is (one analysis for both steps)."""
        x = pcm.astype(np.float64)
        power = _frames(x)
        return self.extend(pcm, seed, power) if _narrowband(power) else pcm

    def extend(self, pcm: npt.NDArray[np.int16], seed: int = 0, power: FloatArray | None = None) -> npt.NDArray[np.int16]:
        """The turn with noise shaped to the predicted envelope added above 4 kHz."""
        x = pcm.astype(np.float64)
        env = self.envelope(x, power)
        gains = np.sqrt(np.maximum(np.exp(env) - FLOOR, 0.0)) @ (_HF > 0)  # amplitude per bin
        rng = np.random.default_rng(seed)
        window = np.hanning(N_FFT + 1)[:-1]
        out = np.zeros(max(x.size, N_FFT) + N_FFT)
        noise = np.exp(2j * np.pi * rng.random(gains.shape))
        frames = np.fft.irfft(gains * noise, N_FFT, axis=1) * window
        for k, fr in enumerate(frames):
            out[k * HOP : k * HOP + N_FFT] += fr
        out = out[: x.size]
        # One gain for the whole turn so the added band measures what was predicted (frame by
        # frame the random phases make it fluctuate as real noise does).
        made = _frames(out) @ _HF.T
        out *= np.sqrt(np.exp(env).sum() / max(made.sum(), 1e-9))
        return np.clip(x + out, -32768, 32767).astype(np.int16)
