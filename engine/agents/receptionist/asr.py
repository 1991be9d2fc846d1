"""pocketsphinx for the receptionist: a decoder over a caller turn (16 kHz int16).

Two language models: `freeform` (the en-us trigram LM bundled in the wheel) and `domain`
(a bigram LM written here from the callers' scripted phrasings, script.INTENTS, backed off
to unigrams so that unseen word orders still decode). `talkover bench intents --asr both`
measures them side by side; the agent uses DEFAULT_MODE.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from engine.agents.receptionist.bandwidth import HOP, BandwidthExtender
from engine.agents.receptionist.intents import normalize
from engine.agents.receptionist.script import INTENTS

MODES = ("domain", "freeform")
DEFAULT_MODE = "domain"
EXTRA_WORDS = {"toothache": "T UW TH EY K"}  # domain words missing from cmudict-en-us
VOWELS = frozenset("AA AE AH AO AW AY EH ER EY IH IY OW OY UH UW".split())
# Language-model weight for the domain LM (pocketsphinx's en-us default is 6.5): swept 6.5, 9, 12, 15 on
# all train-voice lines (clean + telephone); 12 was best on their mean (tel intents 77.3 -> 79.3 %).
DOMAIN_LW = 12.0


@dataclass(slots=True)
class Transcript:
    text: str
    decode_s: float
    audio_s: float

    @property
    def rtf(self) -> float:
        return self.decode_s / self.audio_s if self.audio_s else 0.0


def domain_sentences() -> list[list[str]]:
    return [normalize(p).split() for i in INTENTS for p in i.phrasings]


def write_domain_lm(path: Path) -> Path:
    """A Witten-Bell bigram LM in ARPA format over the scripted phrasings."""
    sents = [["<s>", *s, "</s>"] for s in domain_sentences()]
    uni = Counter(w for s in sents for w in s)
    bi = Counter((a, b) for s in sents for a, b in zip(s, s[1:]))
    followers: dict[str, set[str]] = defaultdict(set)
    for a, b in bi:
        followers[a].add(b)
    vocab = sorted(uni)
    n_tokens = sum(c for w, c in uni.items() if w != "<s>")
    p_uni = {w: (uni[w] + 1) / (n_tokens + len(vocab)) for w in vocab if w != "<s>"}
    lines = ["\\data\\", f"ngram 1={len(vocab)}", f"ngram 2={len(bi)}", "", "\\1-grams:"]
    bo: dict[str, float] = {}
    for h, nexts in followers.items():
        c_h, t_h = sum(bi[(h, w)] for w in nexts), len(nexts)
        left = t_h / (c_h + t_h)
        bo[h] = left / max(1e-9, 1 - sum(p_uni[w] for w in nexts))
    for w in vocab:
        prob = -99.0 if w == "<s>" else math.log10(p_uni[w])
        back = f" {math.log10(bo[w]):.4f}" if w in bo else ""
        lines.append(f"{prob:.4f} {w}{back}")
    lines += ["", "\\2-grams:"]
    for (a, b), c in sorted(bi.items()):
        c_h, t_h = sum(bi[(a, w)] for w in followers[a]), len(followers[a])
        lines.append(f"{math.log10(c / (c_h + t_h)):.4f} {a} {b}")
    lines += ["", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return path


@lru_cache(maxsize=1)
def _domain_lm_path() -> Path:
    """Written once per script version (the name is a hash of the phrasings)."""
    key = hashlib.sha1(repr(domain_sentences()).encode()).hexdigest()[:12]
    path = Path(tempfile.gettempdir()) / f"talkover-receptionist-{os.getuid()}" / f"domain-{key}.lm"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        write_domain_lm(tmp)
        tmp.replace(path)  # atomic: engines starting together never read half a file
    return path


def make_decoder(mode: str = DEFAULT_MODE, non_rhotic_variants: bool = True) -> Any:
    from pocketsphinx import Decoder

    if mode not in MODES:
        raise ValueError(f"unknown recognizer mode {mode!r} (known: {', '.join(MODES)})")
    kwargs: dict[str, Any] = {"samprate": 16000, "loglevel": "FATAL"}
    if mode == "domain":
        kwargs["lm"] = str(_domain_lm_path())
        kwargs["lw"] = DOMAIN_LW
    decoder = Decoder(**kwargs)
    for word, phones in EXTRA_WORDS.items():
        decoder.add_word(word, phones, True)
    if mode == "domain" and non_rhotic_variants:
        add_non_rhotic_variants(decoder, sorted({w for s in domain_sentences() for w in s}))
    return decoder


def non_rhotic(phones: list[str]) -> list[str]:
    """The British/Australian pronunciation of an en-us dictionary entry: an R after a vowel
    and not before one is not spoken ("park" P AA R K -> P AA K), and ER there becomes AH."""
    out: list[str] = []
    for i, p in enumerate(phones):
        before_vowel = i + 1 < len(phones) and phones[i + 1] in VOWELS
        if p == "R" and out and out[-1] in VOWELS and not before_vowel:
            continue
        out.append("AH" if p == "ER" and not before_vowel else p)
    return out


def add_non_rhotic_variants(decoder: Any, words: list[str]) -> int:
    """cmudict-en-us only knows rhotic speech, so a non-rhotic caller's "park" decoded as
    "book" (train voices: espeak-ng en-gb). Adds each domain word's non-rhotic form as an
    alternative pronunciation ("word(N)", which the hypothesis reports as the word itself).
    Train voices: telephone intents 93.2 -> 95.2 %, clean 92.6 -> 92.9 %. Returns how many."""
    added: list[tuple[str, str]] = []
    for word in words:
        known = decoder.lookup_word(word)
        if not known:
            continue
        alternatives, k = [known.split()], 2
        while (alt := decoder.lookup_word(f"{word}({k})")) is not None:
            alternatives.append(alt.split())
            k += 1
        variant = non_rhotic(alternatives[0])
        if variant not in alternatives:
            added.append((f"{word}({k})", " ".join(variant)))
    for i, (name, phones) in enumerate(added):
        decoder.add_word(name, phones, i == len(added) - 1)  # rebuild the search once, at the last
    return len(added)


def transcribe(decoder: Any, pcm: bytes, extend_band: bool = True) -> Transcript:
    """The decode time includes prepare() (and the bandwidth extension of a telephone-band turn)."""
    t0 = time.perf_counter()
    decoder.start_utt()
    decoder.process_raw(prepare(pcm, extend_band), full_utt=True)
    decoder.end_utt()
    hyp = decoder.hyp()
    return Transcript(hyp.hypstr if hyp is not None else "", time.perf_counter() - t0, len(pcm) / 32000)



DITHER_RMS = 16.0  # int16 LSBs, about -66 dBFS
PAD_S = 0.25


@lru_cache(maxsize=1)
def _extender() -> BandwidthExtender:
    return BandwidthExtender.load()


def prepare(pcm: bytes, extend_band: bool = True) -> bytes:
    """A telephone-band turn gets its missing band back (bandwidth.py: held-out voices through a
    PCMU line, intent accuracy 72.3 -> 91.3 %, `talkover bench intents`), then padding and dither
    around it. pocketsphinx's noise and energy estimates fail on digital silence (synthetic speech
    between words, a quiet line after noise suppression): measured on the train voices, clean
    espeak-ng lines decoded to nonsense that the same lines with line noise decoded right."""
    turn = np.frombuffer(pcm, dtype=np.int16)
    if extend_band and turn.size >= 4 * HOP:
        turn = _extender().restore(turn, seed=len(pcm))
    x = turn.astype(np.float32)
    pad = np.zeros(int(PAD_S * 16000), np.float32)
    x = np.concatenate([pad, x, pad])
    x += np.random.default_rng(len(pcm)).normal(0.0, DITHER_RMS, x.size).astype(np.float32)
    return np.clip(x, -32768, 32767).astype(np.int16).tobytes()
