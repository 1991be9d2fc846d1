"""Codec encoder: 16 kHz PCM → one latent per model frame (causal strided convolutions) → RVQ codes."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engine.model.config import EncoderConfig
from engine.model.layers import CausalConv1d, ResidualUnit, StateCursor


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        ch = cfg.channels
        self.inp = CausalConv1d(1, ch[0], 7)
        self.stages = nn.ModuleList()
        for i, stride in enumerate(cfg.strides):
            c_out = ch[i + 1] if i + 1 < len(ch) else cfg.latent_dim
            self.stages.append(nn.ModuleList([ResidualUnit(ch[i], 1), CausalConv1d(ch[i], c_out, 2 * stride, stride)]))
        self.out = CausalConv1d(cfg.latent_dim, cfg.latent_dim, 3)
        self.hop = math.prod(cfg.strides)
        for m in self.modules():  # untrained, biases would dominate the latents and every frame gets one code
            if isinstance(m, nn.Conv1d) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, pcm: Tensor, cur: StateCursor) -> Tensor:
        """pcm [B, T] floats in [-1, 1], T a multiple of the frame → latents [B, D, T / frame]."""
        x = self.inp(pcm.unsqueeze(1), cur)
        for unit, down in self.stages:  # type: ignore[misc]
            x = down(nn.functional.elu(unit(x, cur)), cur)
        return self.out(nn.functional.elu(x), cur)


class ResidualVQ(nn.Module):
    """Residual vector quantizer over unit-norm latents (scaled to sqrt(D)) so codes spread even untrained."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.codebooks = nn.Parameter(torch.randn(cfg.n_codebooks, cfg.codebook_size, cfg.latent_dim))
        self.scale = math.sqrt(cfg.latent_dim)

    def normalise(self, latents: Tensor) -> Tensor:
        return nn.functional.normalize(latents, dim=1) * self.scale

    def encode(self, latents: Tensor) -> Tensor:
        """latents [B, D, T] → codes [B, T, n_q] (int64)."""
        r = self.normalise(latents).transpose(1, 2)  # [B, T, D]
        codes = []
        for book in self.codebooks:
            dist = (book * book).sum(-1) - 2 * r @ book.t()  # |r|² is the same for every entry
            idx = dist.argmin(-1)
            codes.append(idx)
            r = r - book[idx]
        return torch.stack(codes, -1)

    def decode(self, codes: Tensor) -> Tensor:
        """codes [B, T, n_q] → latents [B, D, T]."""
        out = sum(self.codebooks[q][codes[..., q]] for q in range(codes.shape[-1]))
        return out.transpose(1, 2)  # type: ignore[union-attr]
