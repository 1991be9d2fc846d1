"""`talkover bench model --diagnose`: where the codec's word errors come from.

Three extra rows, not bars:
- `<condition> |S|+GL`: a condition's output with its phases thrown away and rebuilt from the
  magnitude spectrogram alone (Griffin-Lim). On uncoded speech this is the bound of any decoder that
  gets the magnitudes right; on talkover's output it shows whether its phases or its magnitudes
  cost the words (same WER as the codec itself: the magnitudes).
- `talkover no RVQ`: the encoder's latents go to the vocoder unquantized (through the projection
  recovered from the baked code embeddings): the quantizer's share of the loss.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.model.layers import StateCursor
from engine.model.model import SpeechModel
from engine.train.codec_model import projection_from_embeddings
from gateway.bench.model_codecs import Coded, Condition

N_FFT, HOP, GL_ITERATIONS = 640, 160, 64  # the vocoder's own window and hop
_WINDOW = np.sqrt(np.hanning(N_FFT + 1)[:N_FFT])


def _frames(y: np.ndarray, count: int) -> np.ndarray:
    padded = np.pad(y, (0, count * HOP + N_FFT - y.size))
    idx = np.arange(count)[:, None] * HOP + np.arange(N_FFT)[None, :]
    return padded[idx] * _WINDOW


def _overlap_add(spec: np.ndarray, length: int) -> np.ndarray:
    frames = np.fft.irfft(spec, n=N_FFT) * _WINDOW
    y = np.zeros(frames.shape[0] * HOP + N_FFT)
    for i, f in enumerate(frames):
        y[i * HOP : i * HOP + N_FFT] += f
    return y[:length] / 2.0  # a squared sqrt-Hann window sums to 2 at a quarter-window hop


def griffin_lim(pcm: np.ndarray, iterations: int = GL_ITERATIONS, seed: int = 0) -> np.ndarray:
    """int16 audio → int16 audio with the same STFT magnitudes and phases rebuilt from them alone."""
    y = pcm.astype(np.float64)
    count = -(-y.size // HOP)
    mag = np.abs(np.fft.rfft(_frames(y, count)))
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, mag.shape)
    for _ in range(iterations):
        est = _overlap_add(mag * np.exp(1j * phase), y.size)
        phase = np.angle(np.fft.rfft(_frames(est, count)))
    out = _overlap_add(mag * np.exp(1j * phase), y.size)
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def magnitude_only(inner: Condition) -> Condition:
    def run(pcm: np.ndarray) -> Coded:
        coded = inner.run(pcm)
        return Coded(griffin_lim(coded.pcm), coded.payload_bits)

    return Condition(f"{inner.name} |S|+GL", inner.nominal_bps, run, diagnostic=True)


def unquantized(model: SpeechModel) -> Condition:
    """The codec without its RVQ: latents → least-squares projection → vocoder (offline)."""
    projection = projection_from_embeddings(model)  # [latent, dim]

    @torch.no_grad()
    def run(pcm: np.ndarray) -> Coded:
        frame = model.cfg.frame_samples
        n = -(-pcm.size // frame) * frame
        x = torch.zeros(1, n)
        x[0, : pcm.size] = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
        latents = model.encoder(x, StateCursor(None, 1, x.device, x.dtype))
        features = model.rvq.normalise(latents).transpose(1, 2) @ projection
        y, _ = model.vocode_embedded(features, None)
        out = np.clip(np.round(y[0, : pcm.size].numpy() * 32768.0), -32768, 32767).astype(np.int16)
        return Coded(out, 0)

    return Condition("talkover no RVQ", 0, run, diagnostic=True)
