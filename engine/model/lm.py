"""Unit LM: a causal transformer over the caller's and the agent's token streams (full duplex).

At every model frame it reads the caller's codes, its own previous codes (or PAD when its
output was not played), one text token, one event token, the speaker vector and the prosody
controls, and emits the agent's next codes plus two turn signals (the caller's turn is over;
the agent's reply is over).

Streaming keeps a KV *ring* per slot: `[layers, B, heads, ctx, head_dim]` and a per-slot
position. Keys are stored already rotated (RoPE at their absolute position), so the ring's
order does not matter; a slot sees the last `ctx` frames. The offline path is a plain causal
transformer with the same window, used by the streaming-equals-offline test.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engine.model.config import EncoderConfig, LMConfig

SIGNALS = 2  # caller_turn_over, reply_over


@dataclass
class LMInputs:
    caller_codes: Tensor  # [B, T, n_q] int64
    agent_codes: Tensor  # [B, T, n_q] int64; codebook_size = PAD (not speaking)
    text: Tensor  # [B, T] int64
    events: Tensor  # [B, T] int64
    speaker: Tensor  # [B, speaker_dim]
    prosody: Tensor  # [B, 4]: rate, pitch, emphasis, pause (neutral 1, 1, 0, 0)


def rope(x: Tensor, pos: Tensor, inv_freq: Tensor) -> Tensor:
    """x [..., T, Dh] rotated by absolute positions pos [..., T] (broadcast over heads)."""
    ang = pos.to(torch.float32).unsqueeze(-1) * inv_freq  # float32 even under bf16: angles need it
    cos, sin = ang.cos().to(x.dtype), ang.sin().to(x.dtype)
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2)


class Block(nn.Module):
    def __init__(self, cfg: LMConfig) -> None:
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.dim // cfg.heads
        self.norm1, self.norm2 = nn.LayerNorm(cfg.dim), nn.LayerNorm(cfg.dim)
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.mlp = nn.Sequential(nn.Linear(cfg.dim, cfg.ffn_dim), nn.GELU(), nn.Linear(cfg.ffn_dim, cfg.dim))

    def _qkv(self, x: Tensor, pos: Tensor, inv_freq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        b, t, _ = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        p = pos.unsqueeze(1)  # [B, 1, T]
        return rope(q, p, inv_freq), rope(k, p, inv_freq), v

    def offline(self, x: Tensor, pos: Tensor, mask: Tensor, inv_freq: Tensor) -> Tensor:
        q, k, v = self._qkv(x, pos, inv_freq)
        att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.proj(att.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm2(x))

    def step(self, x: Tensor, pos: Tensor, ck: Tensor, cv: Tensor, inv_freq: Tensor, exec_mask: Tensor) -> Tensor:
        """x [B, 1, D]; ck/cv [B, H, C, Dh] are updated in place (one ring entry per executed row)."""
        q, k, v = self._qkv(x, pos.unsqueeze(1), inv_freq)  # [B, H, 1, Dh]
        ctx = ck.shape[2]
        idx = (pos % ctx).view(-1, 1, 1, 1).expand(-1, ck.shape[1], 1, ck.shape[3])
        keep = exec_mask.view(-1, 1, 1, 1)
        ck.scatter_(2, idx, torch.where(keep, k.to(ck.dtype), ck.gather(2, idx)))
        cv.scatter_(2, idx, torch.where(keep, v.to(cv.dtype), cv.gather(2, idx)))
        valid = torch.arange(ctx, device=pos.device).unsqueeze(0) <= pos.unsqueeze(1)  # [B, C]
        att = nn.functional.scaled_dot_product_attention(q, ck, cv, attn_mask=valid.view(-1, 1, 1, ctx))
        x = x + self.proj(att.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm2(x))


class UnitLM(nn.Module):
    def __init__(self, cfg: LMConfig, codec: EncoderConfig) -> None:
        super().__init__()
        self.cfg, self.n_q, self.card = cfg, codec.n_codebooks, codec.codebook_size
        self.caller_emb = nn.ModuleList(nn.Embedding(self.card, cfg.dim) for _ in range(self.n_q))
        self.agent_emb = nn.ModuleList(nn.Embedding(self.card + 1, cfg.dim) for _ in range(self.n_q))
        self.text_emb = nn.Embedding(cfg.text_vocab, cfg.dim)
        self.event_emb = nn.Embedding(cfg.n_events, cfg.dim)
        self.speaker = nn.Linear(cfg.speaker_dim, cfg.dim)
        self.prosody = nn.Linear(cfg.prosody_dim, cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.norm = nn.LayerNorm(cfg.dim)
        self.heads = nn.Linear(cfg.dim, self.n_q * self.card + SIGNALS)
        self._freqs: dict[torch.device, Tensor] = {}  # not a buffer: bf16 casts must not touch it

    def _inv_freq(self, device: torch.device) -> Tensor:
        if device not in self._freqs:
            hd = self.cfg.dim // self.cfg.heads
            self._freqs[device] = (1.0 / 10000 ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)).float().to(device)
        return self._freqs[device]

    @property
    def pad(self) -> int:
        return self.card

    def embed(self, inp: LMInputs) -> Tensor:
        x = self.text_emb(inp.text) + self.event_emb(inp.events)
        for q in range(self.n_q):
            x = x + self.caller_emb[q](inp.caller_codes[..., q]) + self.agent_emb[q](inp.agent_codes[..., q])
        neutral = torch.tensor([1.0, 1.0, 0.0, 0.0], device=x.device, dtype=x.dtype)
        spk = nn.functional.normalize(inp.speaker.to(x.dtype), dim=-1) * inp.speaker.shape[-1] ** 0.5
        cond = self.speaker(spk) + self.prosody(inp.prosody.to(x.dtype) - neutral)
        return x + cond.unsqueeze(1)

    def _out(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.heads(self.norm(x))
        logits = h[..., : self.n_q * self.card].unflatten(-1, (self.n_q, self.card))
        return logits, h[..., self.n_q * self.card :]

    def offline(self, inp: LMInputs) -> tuple[Tensor, Tensor]:
        """Whole sequences → (logits [B, T, n_q, K], signal logits [B, T, 2])."""
        x = self.embed(inp)
        t = x.shape[1]
        i = torch.arange(t, device=x.device)
        mask = (i.unsqueeze(0) <= i.unsqueeze(1)) & (i.unsqueeze(1) - i.unsqueeze(0) < self.cfg.context)
        pos = i.unsqueeze(0).expand(x.shape[0], t)
        for blk in self.blocks:
            x = blk.offline(x, pos, mask, self._inv_freq(x.device))  # type: ignore[operator]
        return self._out(x)

    def zero_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
        c = self.cfg
        shape = (c.layers, batch, c.heads, c.context, c.dim // c.heads)
        z = torch.zeros(shape, device=device, dtype=self.text_emb.weight.dtype)  # the LM may run in bf16
        return z, z.clone(), torch.zeros(batch, dtype=torch.long, device=device)

    def step(self, inp: LMInputs, ck: Tensor, cv: Tensor, pos: Tensor, exec_mask: Tensor) -> tuple[Tensor, Tensor]:
        """One frame (T = 1) → (logits [B, n_q, K], signals [B, 2]). The KV ring is written in place
        (rows not executed keep theirs: no copy of the whole cache per step); the caller advances pos."""
        x = self.embed(inp)
        inv_freq = self._inv_freq(x.device)
        for layer, blk in enumerate(self.blocks):
            x = blk.step(x, pos, ck[layer], cv[layer], inv_freq, exec_mask)  # type: ignore[operator]
        return self._out(x[:, 0])
