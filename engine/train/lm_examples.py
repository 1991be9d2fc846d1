"""Training sequences for the unit LM, laid out the way the engine steps it (one row per call).

Every row is a stretch of a call, one model frame per step:
- before the reply the agent is silent and not speaking (its fed-back codes are PAD);
- the reply's phoneme timeline is fed one token per frame from the reply's first step (then
  TEXT_END, then PAD); its audio (piper joe through the frozen codec) follows `lead` frames
  later; the teacher-forced input of a step is the previous step's target, some replaced by
  random codes so the LM leans on the text rather than copying its last frame;
- after the audio the targets are the codec's silence and the reply-over signal is on;
- the caller's stream is line noise (codes of it), and in some rows:
  * `after_caller`: a caller utterance ends shortly before the reply starts; the caller-turn-
    over signal is trained off while it speaks and on from three frames after it stops;
  * `barge_in`: a caller utterance starts during the reply; `REACT_FRAMES` later the agent's
    targets turn to silence and reply-over turns on, text still flowing: the LM learns to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.model.model import TEXT_END, TEXT_PAD

REACT_FRAMES = 4  # 160 ms after the caller's first frame the agent is silent
TURN_OVER_AFTER = 3  # frames of caller silence before its turn counts as over
CORRUPT_P = 0.15
MODES = ("reply", "after_caller", "barge_in")
MODE_P = (0.6, 0.2, 0.2)
IGNORE = -1  # a target position without loss


@dataclass
class CodedCorpus:
    """Everything a batch is cut from, as codes: built once per codec (engine/train/lm.py)."""

    agent_codes: list[np.ndarray]  # [n_i, n_q] int64 per reply
    agent_tokens: list[np.ndarray]  # [n_i] phoneme token per frame
    caller_codes: list[np.ndarray]  # [m_j, n_q] caller utterances
    line_noise: np.ndarray  # [N, n_q] the caller's stream when it says nothing
    silence: np.ndarray  # [S, n_q] the agent's silence


@dataclass
class Batch:
    caller: np.ndarray  # [B, T, n_q]
    agent_in: np.ndarray  # [B, T, n_q]; PAD where not speaking
    text: np.ndarray  # [B, T]
    target: np.ndarray  # [B, T, n_q]; IGNORE where no loss
    reply_over: np.ndarray  # [B, T] float 0/1, NaN where no loss
    turn_over: np.ndarray  # [B, T] float 0/1, NaN where no loss
    speech: np.ndarray  # [B, T] bool: the target is a frame of the reply's audio


class ExampleSampler:
    def __init__(self, corpus: CodedCorpus, frames: int, lead: int, pad: int, card: int, seed: int = 0,
                 mode_p: tuple[float, float, float] = MODE_P) -> None:
        self.c, self.t, self.lead, self.pad, self.card = corpus, frames, lead, pad, card
        self.rng = np.random.default_rng(seed)
        self.mode_p = np.array(mode_p) / sum(mode_p)
        self.n_q = corpus.agent_codes[0].shape[1]

    def _stretch(self, pool: np.ndarray, n: int) -> np.ndarray:
        start = int(self.rng.integers(0, max(1, len(pool) - n)))
        out = pool[start:start + n]
        return out if len(out) == n else np.resize(out, (n, self.n_q))

    def row(self) -> tuple[np.ndarray, ...]:
        c, rng, lead = self.c, self.rng, self.lead
        mode = MODES[int(rng.choice(len(MODES), p=self.mode_p))]
        if mode != "reply" and not c.caller_codes:
            mode = "reply"
        u = int(rng.integers(len(c.agent_codes)))
        audio, tokens = c.agent_codes[u], c.agent_tokens[u]
        n = len(audio)
        pre = int(rng.integers(0, 16))
        heard: np.ndarray | None = None
        caller_at = 0
        if mode == "after_caller":
            heard = c.caller_codes[int(rng.integers(len(c.caller_codes)))][: self.t // 2]
            caller_at = int(rng.integers(0, 6))
            pre = caller_at + len(heard) + int(rng.integers(TURN_OVER_AFTER, 13))
        tail = int(rng.integers(8, 30))
        total = pre + lead + n + tail
        s, end = pre, pre + lead + n  # reply start step; first step after the reply's audio
        caller = self._stretch(c.line_noise, total).copy()
        target = self._stretch(c.silence, total).copy()
        target[s + lead:end] = audio
        speech = np.zeros(total, bool)
        speech[s + lead:end] = True
        text = np.full(total, TEXT_PAD, np.int64)
        text[s:s + n] = tokens
        text[s + n] = TEXT_END
        reply_over = np.full(total, np.nan, np.float32)
        reply_over[s:end] = 0.0
        reply_over[end:] = 1.0
        turn_over = np.full(total, np.nan, np.float32)
        if mode == "after_caller" and heard is not None:
            caller[caller_at:caller_at + len(heard)] = heard
            stop = caller_at + len(heard) + TURN_OVER_AFTER
            turn_over[caller_at:stop] = 0.0
            turn_over[stop:] = 1.0
        if mode == "barge_in" and n > 8:
            b = s + lead + int(rng.integers(3, n - 3))
            heard = c.caller_codes[int(rng.integers(len(c.caller_codes)))][: total - b]
            caller[b:b + len(heard)] = heard
            quiet = b + REACT_FRAMES
            target[quiet:] = self._stretch(c.silence, total - quiet)
            reply_over[quiet:] = 1.0
            speech[quiet:] = False
        agent_in = np.full((total, self.n_q), self.pad, np.int64)
        agent_in[s + 1:] = target[s:-1]
        corrupt = rng.random(total) < CORRUPT_P
        corrupt[: s + 1] = False
        agent_in[corrupt] = rng.integers(0, self.card, (int(corrupt.sum()), self.n_q))
        target[:s] = np.where(rng.random() < 0.5, target[:s], IGNORE)  # silence before a reply: half the rows
        # a window of T steps: random when the row is longer, padded (no loss) when shorter
        start = int(rng.integers(0, total - self.t + 1)) if total > self.t else 0
        win = slice(start, start + self.t)
        parts = [caller[win], agent_in[win], text[win], target[win], reply_over[win], turn_over[win], speech[win]]
        short = self.t - len(parts[0])
        if short:
            fill = [0, self.pad, TEXT_PAD, IGNORE, np.nan, np.nan, False]
            parts = [np.concatenate([p, np.full((short, *p.shape[1:]), f, p.dtype)]) for p, f in zip(parts, fill)]
        return tuple(parts)

    def batch(self, size: int) -> Batch:
        rows = [self.row() for _ in range(size)]
        return Batch(*(np.stack(col) for col in zip(*rows)))
