"""Telephone-band augmentation of 16 kHz speech: what a PCMU call does to a caller's voice
before the gateway upsamples it back to 16 kHz for the engine.

8 kHz band limit (300-3400 Hz), G.711 mu-law round trip (the segment code of the standard,
not a smooth companding curve), line noise at a chosen SNR, optionally a talker echo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import soxr

RATE = 16_000
LINE_RATE = 8_000
_BIAS, _CLIP = 0x84, 32635


@dataclass(frozen=True)
class LineParams:
    snr_db: float = 30.0  # line noise below the speech level
    echo_delay_ms: int = 0  # 0 = no echo
    echo_db: float = -18.0  # echo level relative to the speech


def random_line(rng: np.random.Generator, echo_prob: float = 0.3) -> LineParams:
    echo = rng.random() < echo_prob
    return LineParams(
        snr_db=float(rng.uniform(18.0, 35.0)),
        echo_delay_ms=int(rng.uniform(40, 250)) if echo else 0,
        echo_db=float(rng.uniform(-24.0, -12.0)),
    )


def ulaw_encode(x: np.ndarray) -> np.ndarray:
    """int16 → G.711 mu-law bytes (uint8)."""
    s = x.astype(np.int32)
    sign = np.where(s < 0, 0x80, 0)
    mag = np.minimum(np.abs(s >> 2) << 2, _CLIP) + _BIAS  # 14-bit magnitude, as G.711 reference code
    exponent = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 7, 0, 7)
    mantissa = (mag >> (exponent + 3)) & 0x0F
    return (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)


def ulaw_decode(b: np.ndarray) -> np.ndarray:
    u = ~b.astype(np.int32) & 0xFF
    exponent, mantissa = (u >> 4) & 0x07, u & 0x0F
    mag = ((mantissa << 3) + _BIAS) << exponent
    return np.where(u & 0x80, _BIAS - mag, mag - _BIAS).astype(np.int16)


def band_limit(x8k: np.ndarray, lo_hz: float = 300.0, hi_hz: float = 3400.0) -> np.ndarray:
    """A telephone channel's pass band, as a smooth FFT-domain mask (no filter state: offline use)."""
    n = x8k.size
    spec = np.fft.rfft(x8k.astype(np.float64))
    f = np.fft.rfftfreq(n, 1 / LINE_RATE)
    mask = np.clip((f - lo_hz * 0.6) / (lo_hz * 0.4), 0, 1) * np.clip((hi_hz * 1.1 - f) / (hi_hz * 0.1), 0, 1)
    return np.fft.irfft(spec * mask, n)


def telephone(x: np.ndarray, params: LineParams, rng: np.random.Generator) -> np.ndarray:
    """16 kHz int16 in, 16 kHz int16 out: through an 8 kHz PCMU line."""
    y = soxr.resample(x.astype(np.float32), RATE, LINE_RATE, quality="HQ").astype(np.float64)
    if params.echo_delay_ms:
        d = LINE_RATE * params.echo_delay_ms // 1000
        echo = np.zeros_like(y)
        echo[d:] = y[: y.size - d] * 10 ** (params.echo_db / 20)
        y = y + echo
    y = band_limit(y)
    speech_rms = float(np.sqrt(np.mean(y**2))) if y.size else 0.0
    noise = band_limit(rng.standard_normal(y.size))
    noise *= speech_rms * 10 ** (-params.snr_db / 20) / max(1e-9, float(np.sqrt(np.mean(noise**2))))
    y = np.clip(y + noise, -32768, 32767).astype(np.int16)
    y = ulaw_decode(ulaw_encode(y))
    up = soxr.resample(y.astype(np.float32), LINE_RATE, RATE, quality="HQ")
    return np.clip(up, -32768, 32767).astype(np.int16)
