"""Training-time residual VQ over `SpeechModel.rvq.codebooks`: straight-through gradients,
a commitment loss, EMA codebook updates and dead-code re-initialisation.

The codebooks are updated in place (no gradient), so `ResidualVQ.encode` at inference picks
exactly the codes this quantizer picked in training. Without re-initialising codes that the
batches stop choosing, a 1024-entry book collapses onto a handful of entries.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engine.model.codec import ResidualVQ


@dataclass
class QuantizerOutput:
    quantized: Tensor  # [B, T, D] straight-through: forward = codes' sum, gradient = identity to the latents
    codes: Tensor  # [B, T, n_q]
    commitment: Tensor  # scalar
    usage: Tensor  # [n_q] distinct entries picked in this batch / the most it could pick (min(frames, K))


class EmaResidualQuantizer(nn.Module):
    def __init__(self, rvq: ResidualVQ, decay: float = 0.99, patience: int = 16) -> None:
        super().__init__()
        self.rvq, self.decay = rvq, decay
        n_q, k, d = rvq.codebooks.shape
        rvq.codebooks.requires_grad_(False)
        self.register_buffer("count", torch.zeros(n_q, k))
        self.register_buffer("total", rvq.codebooks.detach().clone())
        self.register_buffer("idle", torch.zeros(n_q, k, dtype=torch.long))  # batches since an entry was picked
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))
        self.patience = patience

    def forward(self, latents: Tensor) -> QuantizerOutput:
        """latents [B, D, T] (raw encoder output) → straight-through quantized [B, T, D]."""
        r_in = self.rvq.normalise(latents).transpose(1, 2)  # [B, T, D]
        flat = r_in.reshape(-1, r_in.shape[-1])
        residual = flat.detach()
        books = self.rvq.codebooks
        if self.training and not bool(self.initialised):
            self._initialise(residual)
        codes, picked, usage = [], torch.zeros_like(flat), []
        commitment = flat.new_zeros(())
        for q in range(books.shape[0]):
            book = books[q]
            dist = (book * book).sum(-1) - 2 * residual @ book.t()
            idx = dist.argmin(-1)
            chosen = book[idx]
            commitment = commitment + (flat - (picked + chosen).detach()).pow(2).mean()
            if self.training:
                self._update(q, residual, idx)
                chosen = books[q][idx]
            usage.append(torch.unique(idx).numel() / min(idx.numel(), book.shape[0]))
            codes.append(idx)
            picked = picked + chosen
            residual = residual - chosen
        quantized = flat + (picked - flat).detach()
        b, t, d = r_in.shape
        return QuantizerOutput(quantized.view(b, t, d), torch.stack(codes, -1).view(b, t, -1),
                               commitment / books.shape[0], torch.tensor(usage))

    @torch.no_grad()
    def _initialise(self, flat: Tensor) -> None:
        """Every level starts from residuals of this batch (level q: what levels < q leave)."""
        books = self.rvq.codebooks
        residual = flat
        for q in range(books.shape[0]):
            pick = torch.randint(0, residual.shape[0], (books.shape[1],), device=flat.device)
            books[q].copy_(residual[pick] + 0.01 * torch.randn_like(residual[pick]))
            self.total[q].copy_(books[q])
            self.count[q].fill_(1.0)
            idx = ((books[q] * books[q]).sum(-1) - 2 * residual @ books[q].t()).argmin(-1)
            residual = residual - books[q][idx]
        self.initialised.fill_(True)

    @torch.no_grad()
    def _update(self, q: int, residual: Tensor, idx: Tensor) -> None:
        """EMA of each entry's hit count and of the sum of the residuals it was picked for; an
        entry not picked for `patience` batches (at a uniform share of 1024 entries over ~400
        frames a batch it would be, with probability < 1 %) restarts at a residual of this batch."""
        k = self.count.shape[1]
        hits = torch.bincount(idx, minlength=k).to(residual.dtype)
        summed = torch.zeros_like(self.total[q]).index_add_(0, idx, residual)
        self.count[q].mul_(self.decay).add_(hits, alpha=1 - self.decay)
        self.total[q].mul_(self.decay).add_(summed, alpha=1 - self.decay)
        self.rvq.codebooks[q].copy_(self.total[q] / self.count[q].clamp_min(1e-6).unsqueeze(1))
        self.idle[q] = torch.where(hits > 0, 0, self.idle[q] + 1)
        dead = torch.nonzero(self.idle[q] >= self.patience).squeeze(1)
        if dead.numel():
            dead = dead[torch.randperm(dead.numel(), device=dead.device)[: residual.shape[0]]]
            pick = torch.randperm(residual.shape[0], device=residual.device)[: dead.numel()]
            fresh = residual[pick] + 0.01 * residual.std() * torch.randn_like(residual[pick])
            uniform = residual.shape[0] / k
            self.rvq.codebooks[q][dead] = fresh
            self.count[q][dead] = uniform
            self.total[q][dead] = fresh * uniform
            self.idle[q][dead] = 0
