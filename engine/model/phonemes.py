"""The unit LM's text input: reply text → one phoneme token per model frame.

Bytes at one per frame do not say *when* a sound is due, and the LM would have to learn the
alignment of text to audio by attention; piper's joe voice speaks ~20 of its phoneme symbols
per second (IPA codepoints, stress marks and word gaps included; measured on the corpus by
`talkover train lm`), fewer than the 25 frames per second of 40 ms frames. So the text queue
holds a *timeline*: every frame carries the phoneme sounding in it, each phoneme on at least
one frame of its own (a phoneme starting in the same frame as the one before moves to the
next free frame; `frame_tokens`). Training takes the onsets from piper's own alignments of the
audio it trains on; at run time `DurationTable` (mean frames per phoneme, measured on that
audio) supplies them. Tokens are piper's phoneme ids (< 256), so the LM's text vocabulary
(bytes + PAD + END) is unchanged.

The frontend (phoneme id map, durations, lead) is saved beside the checkpoint as
`frontend.json`; espeak-ng phonemization comes from the piper package, nothing else.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from engine.model.model import TEXT_END

FRONTEND_FILE = "frontend.json"
BOS, EOS, PAD = "^", "$", "_"
_LOCK = threading.Lock()
_PHONEMIZER: object | None = None


@dataclass
class Frontend:
    id_map: dict[str, int]  # phoneme (one codepoint) → piper id
    mean_s: dict[str, float] = field(default_factory=dict)  # str(id) → mean seconds (with its pad)
    espeak_voice: str = "en-us"
    lead_frames: int = 3  # the audio of a frame's phoneme comes this many frames after it
    frame_s: float = 0.04
    default_s: float = 0.06  # a phoneme never seen in training
    # Stress marks are piper symbols with durations of their own; as tokens they would crowd the
    # queue (lags up to 5 frames measured, 3 without them): their time goes to the next phoneme.
    folded: list[str] = field(default_factory=lambda: ["ˈ", "ˌ"])

    def save(self, directory: Path) -> Path:
        path = Path(directory) / FRONTEND_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), ensure_ascii=False, indent=1))
        return path

    @classmethod
    def load(cls, directory: Path) -> "Frontend":
        return cls(**json.loads((Path(directory) / FRONTEND_FILE).read_text()))

    @classmethod
    def from_piper_config(cls, config: dict[str, object], frame_s: float) -> "Frontend":
        id_map = {p: int(ids[0]) for p, ids in config["phoneme_id_map"].items()}  # type: ignore[union-attr]
        voice = str(config.get("espeak", {}).get("voice", "en-us"))  # type: ignore[union-attr]
        return cls(id_map=id_map, espeak_voice=voice, frame_s=frame_s)

    # -- text → ids ---------------------------------------------------------------------------------
    def sentence_ids(self, text: str) -> list[list[int]]:
        """Piper's phoneme ids per sentence, BOS and EOS included, pads left out."""
        global _PHONEMIZER
        from piper.phonemize_espeak import EspeakPhonemizer

        with _LOCK:
            if _PHONEMIZER is None:
                _PHONEMIZER = EspeakPhonemizer()
            sentences = _PHONEMIZER.phonemize(self.espeak_voice, text)  # type: ignore[attr-defined]
        out = []
        for phonemes in sentences:
            ids = [self.id_map[p] for p in phonemes if p in self.id_map and p not in (PAD, *self.folded)]
            if ids:
                out.append([self.id_map[BOS], *ids, self.id_map[EOS]])
        return out

    def fold(self, ids: list[int], onsets_s: list[float]) -> tuple[list[int], list[float]]:
        """A piper alignment without the folded symbols: the phoneme after one starts at its onset."""
        skip = {self.id_map[p] for p in self.folded if p in self.id_map}
        out_ids, out_onsets, pending = [], [], None
        for i, onset in zip(ids, onsets_s):
            if i in skip:
                pending = onset if pending is None else pending
                continue
            out_ids.append(i)
            out_onsets.append(onset if pending is None else pending)
            pending = None
        return out_ids, out_onsets

    def durations_s(self, ids: list[int], rate: float = 1.0) -> list[float]:
        return [self.mean_s.get(str(i), self.default_s) / rate for i in ids]

    def reply_tokens(self, text: str, rate: float = 1.0) -> list[int]:
        """What the engine queues for a reply: one token per frame, then TEXT_END."""
        ids = [i for sentence in self.sentence_ids(text) for i in sentence]
        if not ids:
            return [TEXT_END]
        durs = self.durations_s(ids, rate)
        onsets = np.concatenate([[0.0], np.cumsum(durs)[:-1]])
        n = max(int(np.ceil(sum(durs) / self.frame_s)), int(onset_frames(onsets, self.frame_s)[-1]) + 1)
        return frame_tokens(ids, onsets, self.frame_s, n).tolist() + [TEXT_END]


def onset_frames(onsets_s: np.ndarray | list[float], frame_s: float) -> np.ndarray:
    """The frame each phoneme's token starts on: its onset rounded to a frame, but at least one
    frame after the previous phoneme's (so no phoneme is lost between two frame boundaries)."""
    prev, starts = -1, []
    for onset in onsets_s:
        prev = max(int(round(float(onset) / frame_s)), prev + 1)
        starts.append(prev)
    return np.array(starts, np.int64)


def frame_tokens(ids: list[int], onsets_s: np.ndarray | list[float], frame_s: float, n_frames: int) -> np.ndarray:
    """The phoneme sounding in each of `n_frames` frames (the last one lasts to the end; a
    phoneme pushed past the end is dropped)."""
    out = np.zeros(n_frames, np.int64)
    starts = onset_frames(onsets_s, frame_s)
    ends = np.append(starts[1:], max(n_frames, int(starts[-1]) + 1)) if len(starts) else starts
    for token, lo, hi in zip(ids, starts, ends):
        out[min(lo, n_frames):min(hi, n_frames)] = token
    return out


def queue_lag_frames(onsets_s: np.ndarray | list[float], frame_s: float) -> np.ndarray:
    """How many frames each phoneme's token comes after its true onset frame (0 for most)."""
    ideal = np.round(np.asarray(onsets_s, np.float64) / frame_s).astype(np.int64)
    return onset_frames(onsets_s, frame_s) - ideal
