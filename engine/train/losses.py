"""Reconstruction losses for the codec: multi-resolution STFT (spectral convergence +
log-magnitude L1) and log-mel L1. Plain torch (no torchaudio in the venv)."""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

RESOLUTIONS = ((256, 64), (512, 128), (1024, 256))  # (n_fft, hop) at 16 kHz: 16, 32, 64 ms windows
EPS = 1e-5


def magnitude(x: Tensor, n_fft: int, hop: int) -> Tensor:
    window = torch.hann_window(n_fft, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, window=window, return_complex=True, center=True)
    return spec.abs().clamp_min(EPS)


def multi_resolution_stft(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """(spectral convergence, log-magnitude L1), each averaged over the resolutions."""
    sc, mag = pred.new_zeros(()), pred.new_zeros(())
    for n_fft, hop in RESOLUTIONS:
        p, t = magnitude(pred, n_fft, hop), magnitude(target, n_fft, hop)
        sc = sc + torch.linalg.norm(t - p, dim=(-2, -1)).div(torch.linalg.norm(t, dim=(-2, -1)) + EPS).mean()
        mag = mag + (t.log() - p.log()).abs().mean()
    return sc / len(RESOLUTIONS), mag / len(RESOLUTIONS)


def _hz_to_mel(f: float | Tensor) -> float | Tensor:
    return 2595.0 * (torch.log10(1 + f / 700.0) if isinstance(f, Tensor) else math.log10(1 + f / 700.0))


@lru_cache(maxsize=4)
def mel_filterbank(n_fft: int = 1024, n_mels: int = 80, rate: int = 16_000) -> Tensor:
    """[n_mels, n_fft/2+1] triangular filters, equally spaced on the HTK mel scale up to Nyquist."""
    freqs = torch.linspace(0, rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges_mel = torch.linspace(0.0, float(_hz_to_mel(rate / 2)), n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    up = (freqs - lo) / (mid - lo)
    down = (hi - freqs) / (hi - mid)
    return torch.clamp(torch.minimum(up, down), min=0.0).float()


def log_mel(x: Tensor, n_fft: int = 1024, hop: int = 256, n_mels: int = 80) -> Tensor:
    fb = mel_filterbank(n_fft, n_mels).to(x.device, x.dtype)
    power = magnitude(x, n_fft, hop).pow(2)
    return (fb @ power).clamp_min(EPS).log()


def log_mel_l1(pred: Tensor, target: Tensor) -> Tensor:
    return (log_mel(pred) - log_mel(target)).abs().mean()


def _phasor_products(spec: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Unit phasors of the phase step to the next frame and to the next bin."""
    unit = spec / (spec.abs() + eps)
    return unit[..., 1:] * unit[..., :-1].conj(), unit[:, 1:] * unit[:, :-1].conj()


def phase_derivatives(pred: Tensor, target: Tensor, n_fft: int = 640, hop: int = 160) -> tuple[Tensor, Tensor]:
    """(instantaneous frequency, group delay) losses: 1 - cos of the wrapped difference
    between the output's and the target's phase step from frame to frame (time) and from bin
    to bin (frequency), weighted by the target's magnitude so silent bins count for nothing.
    Spectral magnitudes alone leave the phase free; a vocoder that advances each bin's phase
    (VocoderConfig.phase_accumulate) needs these steps taught to it to render harmonics."""
    window = torch.hann_window(n_fft, device=pred.device, dtype=pred.dtype)
    p = torch.stft(pred, n_fft, hop, window=window, return_complex=True, center=True)
    t = torch.stft(target, n_fft, hop, window=window, return_complex=True, center=True)
    eps = 1e-4 * float(t.abs().amax().clamp_min(EPS))
    p_time, p_freq = _phasor_products(p, eps)
    t_time, t_freq = _phasor_products(t, eps)
    mag = t.abs()
    w_time = mag[..., 1:] * mag[..., :-1]
    w_freq = mag[:, 1:] * mag[:, :-1]
    iaf = ((1 - (p_time * t_time.conj()).real) * w_time).sum() / (w_time.sum() + EPS)
    gd = ((1 - (p_freq * t_freq.conj()).real) * w_freq).sum() / (w_freq.sum() + EPS)
    return iaf, gd
