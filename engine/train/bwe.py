"""`talkover train bwe`: fit the receptionist's telephone-band bandwidth extender.

Pairs of the same speech, wide band and through a telephone line (engine/data/telephone.py):
the `train`-split caller clips of a `talkover data synth` corpus (clean and `_tel` versions of
one line), plus extra espeak-ng voices synthesized here only for this fit — with four train
voices the envelope predictor learned those voices (held-out error 1.8 against 0.6 on train,
in log power). No held-out voice (engine/data/voices.py) is among them. A small MLP, L1 loss
on log band power, over voiced frames; weights written as a .npz that
engine/agents/receptionist/bandwidth.py reads with numpy alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from engine.agents.receptionist import bandwidth as bw
from engine.data.synth import caller_lines, read_manifest
from engine.data.telephone import random_line, telephone
from engine.data.voices import Voice, read_wav, say

# Voices used only to fit the extender: other espeak-ng variants and accents than the corpus's
# (whose held-out voices are en-us+f3 and en-gb-x-rp+m2), and joe at another speed.
EXTRA_VOICES = (
    Voice("bwe-us-f1", "espeak", "train", "en-us+f1", speed_wpm=165, pitch=55),
    Voice("bwe-scotland-m1", "espeak", "train", "en-gb-scotland+m1", speed_wpm=160, pitch=45),
    Voice("bwe-caribbean-f4", "espeak", "train", "en-029+f4", speed_wpm=155, pitch=60),
    Voice("bwe-nyc-m4", "espeak", "train", "en-us-nyc+m4", speed_wpm=170, pitch=40),
    Voice("bwe-lancaster-f5", "espeak", "train", "en-gb-x-gbclan+f5", speed_wpm=150, pitch=50),
    Voice("bwe-midlands-m5", "espeak", "train", "en-gb-x-gbcwmd+m5", speed_wpm=165, pitch=50),
    Voice("bwe-us-f2", "espeak", "train", "en-us+f2", speed_wpm=175, pitch=65),
    Voice("bwe-joe-mid", "piper", "train", length_scale=1.05, noise_scale=0.6, noise_w=0.7),
)
Pair = tuple[np.ndarray, np.ndarray]  # (telephone band, wide band), int16, aligned


def corpus_pairs(corpus: Path) -> list[Pair]:
    recs = [r for r in read_manifest(corpus) if r.get("kind") == "caller" and r.get("split") == "train"]
    by_id = {str(r["id"]): r for r in recs}
    pairs = []
    for rid, rec in by_id.items():
        tel = by_id.get(rid.removesuffix("_clean") + "_tel")
        if rid.endswith("_clean") and tel is not None:
            pairs.append((read_wav(corpus / str(tel["path"])), read_wav(corpus / str(rec["path"]))))
    return pairs


def voice_pairs(voices: tuple[Voice, ...], lines_per_voice: int, seed: int) -> list[Pair]:
    rng = np.random.default_rng(seed)
    lines = [text for text, _ in caller_lines("train")]
    pairs = []
    for n, voice in enumerate(voices):
        for k in rng.permutation(len(lines))[:lines_per_voice]:
            wide = say(voice, lines[int(k)])
            pairs.append((telephone(wide, random_line(rng), rng), wide))
        print(f"bwe: voice {n + 1}/{len(voices)} {voice.name}", file=sys.stderr, flush=True)
    return pairs


def examples(pairs: list[Pair]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(bw.training_frames(narrow, wide) for narrow, wide in pairs))
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def fit(x: np.ndarray, y: np.ndarray, hidden: int = 128, epochs: int = 30,
        seed: int = 0) -> tuple[bw.BandwidthExtender, list[float]]:
    """The extender and its mean L1 loss per epoch."""
    import torch

    from engine.train.clock import configure_cpu

    configure_cpu(1)
    torch.manual_seed(seed)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden),
                              torch.nn.ReLU(), torch.nn.Linear(hidden, y.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    t0, history = time.monotonic(), []
    for epoch in range(epochs):
        perm, total = torch.randperm(len(xt)), 0.0
        for i in range(0, len(xt), 512):
            idx = perm[i : i + 512]
            loss = (net(xt[idx]) - yt[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        history.append(total / len(xt))
        print(f"bwe: epoch {epoch + 1}/{epochs} L1 {total / len(xt):.3f} ({time.monotonic() - t0:.0f} s)",
              file=sys.stderr, flush=True)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    layers = [(m.weight.detach().double().numpy().T, m.bias.detach().double().numpy()) for m in linears]
    return bw.BandwidthExtender(layers), history


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bwe", help="fit the receptionist's telephone-band bandwidth extender")
    p.add_argument("--data", type=Path, required=True, help="a `talkover data synth` corpus (with telephone clips)")
    p.add_argument("--out", type=Path, default=bw.WEIGHTS, help=f"weights (.npz; default {bw.WEIGHTS})")
    p.add_argument("--lines-per-voice", type=int, default=150, help="lines each extra voice speaks")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=0)

    def run(a: argparse.Namespace) -> int:
        pairs = corpus_pairs(a.data) + voice_pairs(EXTRA_VOICES, a.lines_per_voice, a.seed)
        x, y = examples(pairs)
        print(f"bwe: {len(pairs)} pairs, {len(x)} voiced frames", file=sys.stderr)
        fit(x, y, epochs=a.epochs, seed=a.seed)[0].save(a.out)
        print(f"saved {a.out}", file=sys.stderr)
        return 0

    p.set_defaults(func=run)
