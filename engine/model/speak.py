"""A trained unit LM + vocoder speaking whole replies offline: every text one row of one batch,
`SpeechModel.step` frame by frame exactly as the engine's batched tick runs it, the reply's
phoneme timeline popped one token per frame. Used by the receptionist's model voice
(engine/agents/receptionist/model_voice.py) and `talkover bench model`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.model.model import TEXT_PAD, SpeechModel, StepInputs
from engine.model.phonemes import Frontend

TAIL_FRAMES = 8  # frames after a timeline's last token: the lead's audio and the reply's decay


@dataclass
class Spoken:
    pcm: np.ndarray  # [B, T * frame] float
    codes: np.ndarray  # [B, T, n_q]
    reply_over: np.ndarray  # [B, T] probability
    lengths: list[int]  # frames each row's reply should take (timeline + lead + tail)


@torch.no_grad()
def speak(model: SpeechModel, frontend: Frontend, texts: list[str], caller_pcm: np.ndarray | None = None,
          seed: int = 0, rate: float = 1.0, queues: list[list[int]] | None = None,
          speaking: np.ndarray | None = None) -> Spoken:
    """Every text as one row, stepped frame by frame; `caller_pcm` [B, samples] is what each row hears
    (default: a quiet line). `rate` lays the timelines out faster or slower; `queues` (one token
    per frame, TEXT_PAD where the agent has nothing to say) replaces the texts' own timelines;
    `speaking` [B, steps] says when the turn controller lets each row speak (default: always)."""
    if queues is None:
        queues = [frontend.reply_tokens(t, rate) for t in texts]
    lengths = [len(q) + frontend.lead_frames + TAIL_FRAMES for q in queues]
    steps, frame, b = max(lengths), model.cfg.frame_samples, len(queues)
    rng = np.random.default_rng(seed)
    if caller_pcm is None:
        caller_pcm = rng.normal(0.0, 10 ** (-70 / 20), (b, steps * frame)).astype(np.float32)
    caller = np.zeros((b, steps * frame), np.float32)
    caller[:, : min(caller_pcm.shape[1], steps * frame)] = caller_pcm[:, : steps * frame]
    state = model.init_state(b)
    dev = model.device
    pcm, codes, over = [], [], []
    ones = torch.ones(b, dtype=torch.bool, device=dev)
    for t in range(steps):
        text = torch.tensor([q[t] if t < len(q) else TEXT_PAD for q in queues], device=dev)
        talking = ones if speaking is None else torch.from_numpy(
            speaking[:, t] if t < speaking.shape[1] else np.zeros(b, bool)).to(dev)
        inp = StepInputs(torch.from_numpy(caller[:, t * frame:(t + 1) * frame]).to(dev), text,
                         torch.zeros(b, dtype=torch.long, device=dev), talking, ones)
        state, out = model.step(state, inp)
        pcm.append(out.pcm.float().cpu().numpy())
        codes.append(out.agent_codes.cpu().numpy())
        over.append(out.signals[:, 1].float().cpu().numpy())
    return Spoken(np.concatenate(pcm, 1), np.stack(codes, 1), np.stack(over, 1), lengths)
