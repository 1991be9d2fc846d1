"""`talkover data synth OUT_DIR`: the offline synthetic corpus for the receptionist's domain.

What it writes (all 16 kHz mono int16 WAV, listed in OUT_DIR/manifest.jsonl):
- agent speech: the receptionist's replies and general sentences in the agent's voice (piper joe);
- caller speech: every scripted phrasing of every intent and the general sentences, in each
  caller voice (engine/data/voices.py: espeak-ng variants, joe at other length/noise scales),
  each clean and through a telephone line (engine/data/telephone.py: 8 kHz band, G.711 mu-law,
  line noise, sometimes echo). Caller voices are split train / heldout: held-out voices are
  never used for tuning.

`--size N` makes N takes of every caller line (takes after the first jitter the voice's speed
and pitch); `--seed` fixes the script, the jitter and the line conditions. piper's own sampling
noise comes from onnxruntime's random ops, so piper audio is not bit-identical between runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from engine.agents.receptionist.script import FALLBACK, GENERAL_SENTENCES, INTENTS, WELCOME
from engine.data import telephone, voices
from engine.data.voices import Voice


@dataclass
class Item:
    """One utterance of the corpus, before it is rendered."""

    id: str
    kind: str  # "agent" | "caller"
    text: str
    intent: str  # the intent a caller line asks for; "fallback" for general sentences; "" for the agent
    voice: Voice
    take: int = 0
    line: telephone.LineParams | None = None  # None: clean 16 kHz
    line_seed: int = 0
    meta: dict[str, object] = field(default_factory=dict)


def _jitter(voice: Voice, rng: np.random.Generator) -> Voice:
    if voice.engine == "piper":
        return replace(voice, length_scale=round(voice.length_scale * float(rng.uniform(0.9, 1.1)), 3),
                       noise_scale=round(float(rng.uniform(0.4, 0.9)), 3))
    return replace(voice, speed_wpm=int(voice.speed_wpm * rng.uniform(0.88, 1.12)),
                   pitch=int(np.clip(voice.pitch + rng.integers(-10, 11), 0, 99)))


def caller_lines(split: str) -> list[tuple[str, str]]:
    """(text, intent) pairs every caller voice of `split` speaks."""
    lines = [(p, i.name) for i in INTENTS for p in i.phrasings]
    return lines + [(s, FALLBACK.name) for s in GENERAL_SENTENCES]


def plan(seed: int = 0, size: int = 1, splits: tuple[str, ...] = ("train", "heldout"),
         agent: bool = True, telephone_band: bool = True) -> list[Item]:
    rng = np.random.default_rng(seed)
    items: list[Item] = []
    if agent:
        texts = [("welcome", WELCOME)] + [(i.name, i.reply) for i in (*INTENTS, FALLBACK) if i.reply]
        texts += [(f"general{k:02d}", s) for k, s in enumerate(GENERAL_SENTENCES)]
        items += [Item(f"agent/{name}", "agent", text, "", voices.AGENT) for name, text in texts]
    for split in splits:
        for voice in voices.callers(split):
            for take in range(size):
                for n, (text, intent) in enumerate(caller_lines(split)):
                    v = voice if take == 0 else _jitter(voice, rng)
                    base = f"caller/{split}/{voice.name}/t{take}/{intent}_{n:03d}"
                    items.append(Item(f"{base}_clean", "caller", text, intent, v, take))
                    if telephone_band:
                        line = telephone.random_line(rng)
                        items.append(Item(f"{base}_tel", "caller", text, intent, v, take, line,
                                          int(rng.integers(2**31))))
    return items


def render(item: Item, cache: dict[tuple[Voice, str], np.ndarray] | None = None) -> np.ndarray:
    """The item's audio. A clean and a telephone item of the same line share one synthesis."""
    key = (item.voice, item.text)
    audio = cache.get(key) if cache is not None else None
    if audio is None:
        audio = voices.say(item.voice, item.text)
        if cache is not None:
            cache.clear()  # only the latest line is reused (its telephone copy follows it)
            cache[key] = audio
    if item.line is not None:
        audio = telephone.telephone(audio, item.line, np.random.default_rng(item.line_seed))
    return audio


def generate(items: list[Item]) -> Iterator[tuple[Item, np.ndarray]]:
    cache: dict[tuple[Voice, str], np.ndarray] = {}
    for item in items:
        yield item, render(item, cache)


class Progress:
    """A one-line progress bar on stderr (a plain line per 10 % when stderr is not a terminal)."""

    def __init__(self, total: int, what: str) -> None:
        self.total, self.what, self.done, self.t0 = total, what, 0, time.monotonic()
        self._tty, self._last_decile = sys.stderr.isatty(), -1

    def step(self, n: int = 1) -> None:
        self.done += n
        frac = self.done / max(1, self.total)
        el = time.monotonic() - self.t0
        eta = el / frac - el if frac > 0 else 0.0
        bar = "#" * int(frac * 30)
        line = f"{self.what} {self.done}/{self.total} [{bar:<30}] {el:5.0f} s elapsed, ~{eta:4.0f} s left"
        if self._tty:
            print("\r" + line, end="" if self.done < self.total else "\n", file=sys.stderr, flush=True)
        elif int(frac * 10) != self._last_decile:
            self._last_decile = int(frac * 10)
            print(line, file=sys.stderr, flush=True)


def synth(out: Path, seed: int = 0, size: int = 1, telephone_band: bool = True) -> Path:
    items = plan(seed, size, telephone_band=telephone_band)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    progress = Progress(len(items), "synth")
    total_s = 0.0
    with open(manifest, "w") as f:
        for item, audio in generate(items):
            path = Path(item.id + ".wav")
            voices.write_wav(out / path, audio)
            total_s += audio.size / voices.RATE
            rec = {"id": item.id, "path": str(path), "kind": item.kind, "text": item.text, "intent": item.intent,
                   "voice": item.voice.name, "split": item.voice.split, "take": item.take,
                   "channel": "clean" if item.line is None else "telephone",
                   "line": asdict(item.line) if item.line else None,
                   "voice_params": asdict(item.voice), "duration_s": round(audio.size / voices.RATE, 3)}
            f.write(json.dumps(rec) + "\n")
            progress.step()
    print(f"wrote {len(items)} utterances ({total_s / 60:.1f} min of audio) to {out} (manifest: {manifest})")
    return manifest


def read_manifest(corpus: Path) -> list[dict[str, object]]:
    with open(corpus / "manifest.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("synth", help="synthesize the offline corpus (agent and caller speech, telephone band)")
    p.add_argument("out", type=Path, help="output directory (WAVs + manifest.jsonl)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=1, help="takes of every caller line (jittered speed/pitch after the first)")
    p.add_argument("--no-telephone", action="store_true", help="clean 16 kHz only")
    p.set_defaults(func=lambda a: (synth(a.out, a.seed, a.size, not a.no_telephone), 0)[1])
