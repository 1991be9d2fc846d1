"""The codec round trip as one trainable module over a `SpeechModel`'s parts.

pcm → Encoder → (EMA residual VQ, straight-through) → projection → Vocoder.synthesise → pcm.
The vocoder reads codes through one embedding table per codebook and sums them; here the
sum is `projection(sum of the chosen codebook vectors)`, which is linear in the codes, so
`bake()` writes `emb[q].weight = codebooks[q] @ projection.T` and the engine's code path
(`SpeechModel.encode` → `SpeechModel.vocode`) reproduces the training forward exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engine.model.layers import StateCursor
from engine.model.model import SpeechModel
from engine.train.quantizer import EmaResidualQuantizer


@dataclass
class RoundTrip:
    pcm: Tensor  # [B, T] reconstruction
    codes: Tensor  # [B, T / frame, n_q]
    commitment: Tensor
    usage: Tensor  # [n_q]


class CodecTrainModule(nn.Module):
    def __init__(self, model: SpeechModel, vocoder_only: bool = False) -> None:
        super().__init__()
        self.model = model
        self.vocoder_only = vocoder_only
        self.quantizer = EmaResidualQuantizer(model.rvq)
        latent, dim = model.cfg.encoder.latent_dim, model.cfg.vocoder.dim
        self.projection = nn.Linear(latent, dim, bias=False)
        for emb in model.vocoder.emb:  # written by bake(), not trained
            emb.weight.requires_grad_(False)
        if vocoder_only:
            self.projection.requires_grad_(False)

    def train(self, mode: bool = True) -> "CodecTrainModule":
        super().train(mode)
        if self.vocoder_only:  # the codes must not move: no EMA codebook updates, no dropout
            self.model.encoder.eval()
            self.quantizer.eval()
        return self

    def trainable(self) -> list[nn.Parameter]:
        parts = [self.model.vocoder] if self.vocoder_only else [self.model.encoder, self.model.vocoder, self.projection]
        return [p for m in parts for p in m.parameters() if p.requires_grad]

    def forward(self, pcm: Tensor) -> RoundTrip:
        b = pcm.shape[0]
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.vocoder_only):
            latents = self.model.encoder(pcm, StateCursor(None, b, pcm.device, pcm.dtype))
            q = self.quantizer(latents)
        voc = self.model.vocoder
        tail = torch.zeros(b, *voc.state_tail_shape(), device=pcm.device, dtype=pcm.dtype)
        out, _ = voc.synthesise(self.projection(q.quantized), tail, StateCursor(None, b, pcm.device, pcm.dtype))
        return RoundTrip(out, q.codes, q.commitment, q.usage)

    @torch.no_grad()
    def bake(self) -> None:
        """Write the vocoder's code embeddings from the codebooks and the projection."""
        if self.vocoder_only:  # the loaded embeddings are the codes' meaning: keep them bit for bit
            return
        for q, emb in enumerate(self.model.vocoder.emb):
            emb.weight.copy_(self.model.rvq.codebooks[q] @ self.projection.weight.t())

    @torch.no_grad()
    def recover_projection(self) -> None:
        """The projection back from baked embeddings (a checkpoint saved without its train state)."""
        self.projection.weight.copy_(projection_from_embeddings(self.model).t())


@torch.no_grad()
def projection_from_embeddings(model: SpeechModel) -> Tensor:
    """[latent, dim]: the least-squares solution of codebooks @ P = the vocoder's code embeddings,
    exact for full-rank books (bake() wrote the embeddings as codebooks @ projection.T)."""
    books = model.rvq.codebooks.flatten(0, 1)
    embs = torch.cat([emb.weight for emb in model.vocoder.emb])
    return torch.linalg.lstsq(books, embs).solution
