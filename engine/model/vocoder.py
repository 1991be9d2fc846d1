"""Vocoder: agent codes → 16 kHz PCM through causal ConvNeXt blocks and an iSTFT head (after Vocos).

Each model frame is split into `frame / hop` sub-frames (10 ms). The head predicts a
log-magnitude and a phase per frequency bin; an inverse real DFT (a matrix product, so it
exports to ONNX) and a windowed overlap-add give the samples. A sub-frame's window is placed
so that its first `hop` samples complete the output: nothing waits for a future frame, and
the not-yet-complete overlap (`n_fft - hop` samples) is per-slot state.

With `phase_accumulate` the phase head gives increments instead: each bin advances by its
centre frequency x hop plus the predicted deviation, summed from sub-frame to sub-frame, and
the running phase is per-slot state too. It is kept in the same tail tensor, in rows after
the overlap-add rows (padded to `hop` columns), so the engine's state handling is unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engine.model.config import EncoderConfig, VocoderConfig
from engine.model.layers import ConvNeXtBlock, StateCursor

MAX_LOG_MAG = 4.0
OUTPUT_GAIN = 1.0  # an untrained head then plays noise at about -30 dBFS


class Vocoder(nn.Module):
    def __init__(self, cfg: VocoderConfig, codec: EncoderConfig, frame_samples: int) -> None:
        super().__init__()
        self.cfg, self.n_q = cfg, codec.n_codebooks
        self.up = frame_samples // cfg.hop
        self.emb = nn.ModuleList(nn.Embedding(codec.codebook_size, cfg.dim) for _ in range(self.n_q))
        self.expand = nn.Linear(cfg.dim, cfg.dim * self.up)
        self.blocks = nn.ModuleList(ConvNeXtBlock(cfg.dim, cfg.kernel) for _ in range(cfg.blocks))
        self.norm = nn.LayerNorm(cfg.dim)
        n, bins = cfg.n_fft, cfg.n_fft // 2 + 1
        self.head = nn.Linear(cfg.dim, 2 * bins)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.constant_(self.head.bias, 0.0)
        k = torch.arange(bins, dtype=torch.float64).unsqueeze(1)
        t = torch.arange(n, dtype=torch.float64).unsqueeze(0)
        weight = torch.full((bins, 1), 2.0, dtype=torch.float64)
        weight[0] = weight[-1] = 1.0
        window = torch.hann_window(n, periodic=True, dtype=torch.float64).sqrt()
        basis_cos = weight * torch.cos(2 * math.pi * k * t / n) / n * window
        basis_sin = -weight * torch.sin(2 * math.pi * k * t / n) / n * window
        self.register_buffer("basis", torch.cat([basis_cos, basis_sin]).float(), persistent=False)
        self.overlap = n // cfg.hop  # sub-frames a window spans
        self.bins = bins
        self.phase_rows = -(-bins // cfg.hop) if cfg.phase_accumulate else 0
        centre = 2 * math.pi * torch.arange(bins, dtype=torch.float64) * cfg.hop / n  # radians per sub-frame
        self.register_buffer("centre_advance", torch.remainder(centre, 2 * math.pi).float(), persistent=False)

    def state_tail_shape(self) -> tuple[int, int]:
        """Rows of `hop` samples: the overlap-add tail, then (phase_accumulate) the running phases."""
        return (self.overlap - 1 + self.phase_rows, self.cfg.hop)

    def forward(self, codes: Tensor, tail: Tensor, cur: StateCursor) -> tuple[Tensor, Tensor]:
        """codes [B, T, n_q], tail [B, overlap-1, hop] → (pcm [B, T * frame] in about [-1, 1], tail')."""
        return self.synthesise(self.embed(codes), tail, cur)

    def embed(self, codes: Tensor) -> Tensor:
        """codes [B, T, n_q] → the summed code embeddings [B, T, dim]."""
        return sum(self.emb[q](codes[..., q]) for q in range(self.n_q))  # type: ignore[return-value]

    def expected_embedding(self, probs: Tensor) -> Tensor:
        """probs [B, T, n_q, codebook_size] (each codebook's distribution) → the summed expected
        code embeddings [B, T, dim]; one-hot probs give embed()'s result."""
        return sum(probs[..., q, :] @ self.emb[q].weight for q in range(self.n_q))  # type: ignore[return-value]

    def synthesise(self, x: Tensor, tail: Tensor, cur: StateCursor) -> tuple[Tensor, Tensor]:
        """The summed code embeddings x [B, T, dim] → (pcm, tail'). Training feeds it continuous
        (straight-through quantized) features here; engine/train/codec_model.py."""
        b, t, _ = x.shape
        x = self.expand(x).view(b, t * self.up, self.cfg.dim).transpose(1, 2)
        for blk in self.blocks:
            x = blk(x, cur)
        h = self.head(self.norm(x.transpose(1, 2)))  # [B, S, 2 * bins]
        bins = h.shape[-1] // 2
        mag = torch.exp(h[..., :bins].clamp(max=MAX_LOG_MAG))
        ola_tail = tail[:, : self.overlap - 1]
        if self.phase_rows:
            start = tail[:, self.overlap - 1 :].flatten(1)[:, :bins]
            step = self.centre_advance.to(h.dtype) + h[..., bins:] * (math.pi / 2)  # type: ignore[operator]
            # float64 and wrapped: offline runs of minutes and frame-by-frame streaming agree
            phase64 = torch.remainder(start.double().unsqueeze(1) + torch.cumsum(step.double(), dim=1), 2 * math.pi)
            phase = phase64.to(h.dtype)
            carry = phase[:, -1]
            carry = nn.functional.pad(carry, (0, self.phase_rows * self.cfg.hop - bins)).view(b, self.phase_rows, -1)
        else:
            phase = h[..., bins:] * math.pi
        spec = torch.cat([mag * torch.cos(phase), mag * torch.sin(phase)], -1)
        frames = (spec @ self.basis.to(spec.dtype)).view(b, -1, self.overlap, self.cfg.hop)  # type: ignore[operator]
        s, r = frames.shape[1], self.overlap
        y = sum(nn.functional.pad(frames[:, :, i], (0, 0, i, r - 1 - i)) for i in range(r))
        y = y + nn.functional.pad(ola_tail, (0, 0, 0, s))  # type: ignore[operator]
        new_tail = torch.cat([y[:, s:], carry], 1) if self.phase_rows else y[:, s:]
        return y[:, :s].flatten(1) * OUTPUT_GAIN, new_tail
