"""Training audio from a `talkover data synth` corpus, and which of it is held out.

Held out (never trained on, only measured by `talkover bench model`):
- every clip of a held-out caller voice (the manifest's `split == "heldout"`);
- every clip, in any voice, of a held-out sentence: one text in four, chosen by a hash of
  the text so that the corpus, the trainer and the bench agree without sharing a file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.data.synth import read_manifest
from engine.data.voices import read_wav

HELDOUT_TEXT_ONE_IN = 4


def is_heldout_text(text: str) -> bool:
    key = " ".join(text.lower().split()).encode()
    return int(hashlib.sha1(key).hexdigest(), 16) % HELDOUT_TEXT_ONE_IN == 0


def is_training_record(rec: dict[str, object]) -> bool:
    return rec.get("split") in ("agent", "train") and not is_heldout_text(str(rec["text"]))


def _as_corpus_record(rec: dict[str, object]) -> dict[str, object]:
    """A `talkover train lm-corpus` record (agent replies in the agent's voice, no kind/split)
    read as agent speech, so the codec can also train on the LM's corpus."""
    if "kind" in rec:
        return rec
    return {**rec, "kind": "agent", "split": "agent"}


@dataclass
class Clip:
    id: str
    kind: str  # "agent" | "caller"
    audio: np.ndarray  # int16, 16 kHz


def load_training_clips(corpora: Path | list[Path], limit: int | None = None) -> list[Clip]:
    """Training clips of one or more corpora: `talkover data synth` output, or a
    `talkover train lm-corpus` directory (all agent speech). `limit` caps each corpus."""
    clips: list[Clip] = []
    for corpus in [corpora] if isinstance(corpora, Path) else corpora:
        records = [r for r in map(_as_corpus_record, read_manifest(corpus)) if is_training_record(r)]
        if not records:
            raise ValueError(f"{corpus}: no training clips (agent or train-split voices, sentences not held out)")
        clips += [Clip(f"{corpus.name}/{r['id']}", str(r["kind"]), read_wav(corpus / str(r["path"])))
                  for r in records[:limit]]
    return [c for c in clips if c.audio.size > 0]


class CropSampler:
    """Random fixed-length crops with a random gain; a share of every batch is agent speech
    (the agent's own voice is a few dozen clips among thousands of caller clips)."""

    def __init__(self, clips: list[Clip], crop: int, agent_share: float = 0.25, seed: int = 0) -> None:
        self.crop, self.rng = crop, np.random.default_rng(seed)
        self.agent = [c for c in clips if c.kind == "agent"]
        self.caller = [c for c in clips if c.kind != "agent"]
        self.agent_share = agent_share if self.agent and self.caller else (1.0 if self.agent else 0.0)

    def _crop(self, audio: np.ndarray) -> np.ndarray:
        x = audio.astype(np.float32) / 32768.0
        if x.size < self.crop:
            x = np.pad(x, (0, self.crop - x.size))
        start = int(self.rng.integers(0, x.size - self.crop + 1))
        gain = 10 ** (self.rng.uniform(-6.0, 4.0) / 20)
        return np.clip(x[start : start + self.crop] * gain, -1.0, 1.0)

    def batch(self, size: int) -> np.ndarray:
        n_agent = int(self.rng.binomial(size, self.agent_share))
        pools = [self.agent] * n_agent + [self.caller] * (size - n_agent)
        return np.stack([self._crop(pool[int(self.rng.integers(len(pool)))].audio) for pool in pools])
