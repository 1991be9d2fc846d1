"""The speech model: encoder → RVQ → unit LM → vocoder, stepped one model frame at a time.

All per-slot state lives in a `StreamState` whose tensors have the slot as leading dimension.
`step` advances only the rows whose exec flag is set; the others keep their state exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from engine.model.codec import Encoder, ResidualVQ
from engine.model.config import ModelConfig
from engine.model.layers import StateCursor, masked_state, zero_states
from engine.model.lm import LMInputs, UnitLM
from engine.model.vocoder import Vocoder

if TYPE_CHECKING:
    from engine.model.phonemes import Frontend

TEXT_PAD, TEXT_END = 256, 257
EVENT_NONE, EVENT_CUT_OFF, EVENT_RESUMED = 0, 1, 2
DTMF_EVENTS = {d: 3 + i for i, d in enumerate("0123456789*#")}
NEUTRAL_PROSODY = (1.0, 1.0, 0.0, 0.0)  # rate, pitch, emphasis, pause


def text_tokens(text: str) -> list[int]:
    return list(text.encode("utf-8")) + [TEXT_END]


@dataclass
class StreamState:
    enc: list[Tensor]
    lm_k: Tensor
    lm_v: Tensor
    lm_pos: Tensor  # [B] frames seen
    prev_agent: Tensor  # [B, n_q] codes fed back at the next step (PAD: not played)
    voc: list[Tensor]  # conv contexts, then the overlap-add tail
    speaker: Tensor  # [B, speaker_dim]
    prosody: Tensor  # [B, 4]

    def rows(self, idx: Tensor) -> "StreamState":
        """The state of some slots (a gathered copy)."""
        return StreamState(**{f.name: _map(getattr(self, f.name), lambda t: t.index_select(_dim(f.name), idx))
                              for f in fields(self)})

    def put_rows(self, idx: Tensor, sub: "StreamState") -> None:
        for f in fields(self):
            mine, theirs, d = getattr(self, f.name), getattr(sub, f.name), _dim(f.name)
            for a, b in zip(mine if isinstance(mine, list) else [mine], theirs if isinstance(theirs, list) else [theirs]):
                a.index_copy_(d, idx, b)

    def bytes(self) -> int:
        total = 0
        for f in fields(self):
            v = getattr(self, f.name)
            total += sum(t.numel() * t.element_size() for t in (v if isinstance(v, list) else [v]))
        return total


def _dim(name: str) -> int:
    return 1 if name in ("lm_k", "lm_v") else 0


def _map(v: Tensor | list[Tensor], fn):  # type: ignore[no-untyped-def]
    return [fn(t) for t in v] if isinstance(v, list) else fn(v)


@dataclass
class StepInputs:
    pcm: Tensor  # [B, frame] float in [-1, 1]
    text: Tensor  # [B] int64
    events: Tensor  # [B] int64
    speaking: Tensor  # [B] bool: this frame's agent output is played (fed back, vocoded)
    exec_mask: Tensor  # [B] bool


@dataclass
class StepOutputs:
    pcm: Tensor  # [B, frame] float
    caller_codes: Tensor  # [B, n_q]
    agent_codes: Tensor  # [B, n_q]
    logits: Tensor  # [B, n_q, K]
    signals: Tensor  # [B, 2] probabilities: caller turn over, reply over


class SpeechModel(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.encoder = Encoder(cfg.encoder)
        self.rvq = ResidualVQ(cfg.encoder)
        self.lm = UnitLM(cfg.lm, cfg.encoder)
        self.vocoder = Vocoder(cfg.vocoder, cfg.encoder, cfg.frame_samples)
        # reply text → per-frame phoneme tokens, for an LM trained by `talkover train lm` (a checkpoint's
        # frontend.json); None: the text queue takes bytes (text_tokens)
        self.frontend: Frontend | None = None
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.rvq.codebooks.device

    @property
    def dtype(self) -> torch.dtype:
        return self.rvq.codebooks.dtype

    def lm_in_bf16(self) -> None:
        """On CUDA, run the LM (nearly all FLOPs) in bfloat16; encoder and vocoder stay float32."""
        if self.device.type != "cuda":
            raise ValueError("bfloat16 is only used on CUDA")
        self.lm.to(torch.bfloat16)

    def parameter_counts(self) -> dict[str, int]:
        parts = {"encoder": self.encoder, "rvq": self.rvq, "lm": self.lm, "vocoder": self.vocoder}
        return {k: sum(p.numel() for p in m.parameters()) for k, m in parts.items()}

    def init_state(self, batch: int) -> StreamState:
        dev, dt, n_q = self.device, self.dtype, self.cfg.encoder.n_codebooks
        k, v, pos = self.lm.zero_state(batch, dev, dt)
        voc = zero_states(self.vocoder, batch, dev, dt) + [torch.zeros(batch, *self.vocoder.state_tail_shape(),
                                                                       device=dev, dtype=dt)]
        return StreamState(
            enc=zero_states(self.encoder, batch, dev, dt), lm_k=k, lm_v=v, lm_pos=pos,
            prev_agent=torch.full((batch, n_q), self.lm.pad, dtype=torch.long, device=dev), voc=voc,
            speaker=torch.zeros(batch, self.cfg.lm.speaker_dim, device=dev, dtype=dt),
            prosody=torch.tensor([NEUTRAL_PROSODY], device=dev, dtype=dt).repeat(batch, 1),
        )

    def reset_rows(self, state: StreamState, rows: Tensor) -> None:
        """Zero the state of some slots (a new call, or a reset) in place."""
        fresh = self.init_state(len(rows))
        state.put_rows(rows, fresh)

    # -- parts, usable on whole sequences (offline) or frame by frame ----------------------------
    def encode(self, pcm: Tensor, states: list[Tensor] | None = None) -> tuple[Tensor, Tensor, list[Tensor]]:
        """pcm [B, T] → (codes [B, T/frame, n_q], latents [B, D, T/frame], states')."""
        cur = StateCursor(states, pcm.shape[0], pcm.device, pcm.dtype)
        latents = self.encoder(pcm, cur)
        return self.rvq.encode(latents), latents, cur.out

    def vocode(self, codes: Tensor, states: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        """codes [B, T, n_q] → (pcm [B, T * frame], states')."""
        return self.vocode_embedded(self.vocoder.embed(codes), states)

    def vocode_embedded(self, x: Tensor, states: list[Tensor] | None = None) -> tuple[Tensor, list[Tensor]]:
        """Summed code embeddings x [B, T, dim] (Vocoder.embed / expected_embedding) → (pcm, states')."""
        b = x.shape[0]
        if states is None:
            tail = torch.zeros(b, *self.vocoder.state_tail_shape(), device=self.device, dtype=self.dtype)
            cur = StateCursor(None, b, self.device, self.dtype)
        else:
            tail, cur = states[-1], StateCursor(states[:-1], b, self.device, self.dtype)
        pcm, tail = self.vocoder.synthesise(x, tail, cur)
        return pcm, cur.out + [tail]

    def speaker_from_prompt(self, pcm: Tensor) -> Tensor:
        """A speaker vector from a prompt recording [T] or [B, T] (pooled encoder latents)."""
        pcm = pcm.view(-1, pcm.shape[-1]).to(self.device, self.dtype)
        usable = pcm.shape[-1] - pcm.shape[-1] % self.cfg.frame_samples
        if usable == 0:
            raise ValueError(f"a speaker prompt needs at least {self.cfg.frame_ms:.0f} ms of audio")
        with torch.no_grad():
            _, latents, _ = self.encode(pcm[:, :usable])
        return latents.mean(-1)

    # -- one frame for a batch of slots ----------------------------------------------------------
    @torch.no_grad()
    def step(self, state: StreamState, inp: StepInputs) -> tuple[StreamState, StepOutputs]:
        """One frame for every row; the KV ring of `state` is updated in place, the rest is returned."""
        caller, _, enc = self.encode(inp.pcm, state.enc)
        lm_in = LMInputs(caller, state.prev_agent.unsqueeze(1), inp.text.unsqueeze(1), inp.events.unsqueeze(1),
                         state.speaker, state.prosody)
        logits, signals = self.lm.step(lm_in, state.lm_k, state.lm_v, state.lm_pos, inp.exec_mask)
        agent = logits.argmax(-1)
        signals = torch.sigmoid(signals.float())
        if self.cfg.lm.vocode_expected:
            probs = torch.softmax(logits.float(), -1).to(self.dtype)
            pcm, voc = self.vocode_embedded(self.vocoder.expected_embedding(probs.unsqueeze(1)), state.voc)
        else:
            pcm, voc = self.vocode(agent.unsqueeze(1), state.voc)
        m = inp.exec_mask
        speak = m & inp.speaking
        new = StreamState(
            enc=masked_state(state.enc, enc, m),
            lm_k=state.lm_k,  # updated in place by the LM
            lm_v=state.lm_v,
            lm_pos=state.lm_pos + m.long(),
            prev_agent=torch.where(m.unsqueeze(1), torch.where(speak.unsqueeze(1), agent, self.lm.pad),
                                   state.prev_agent),
            voc=masked_state(state.voc, voc, speak),
            speaker=state.speaker, prosody=state.prosody,
        )
        return new, StepOutputs(pcm, caller[:, 0], agent, logits, signals)
