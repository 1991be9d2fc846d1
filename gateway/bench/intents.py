"""`talkover bench intents`: the receptionist's understanding on caller voices it was not tuned on.

Every scripted phrasing of every intent (and the general sentences, whose right answer is the
fallback) is spoken by each held-out caller voice (engine/data/voices.py), clean at 16 kHz
and through a telephone line (8 kHz band, G.711 mu-law, line noise, sometimes echo), decoded
by pocketsphinx exactly as the agent does it (asr.transcribe) and classified (intents.py).

Printed: accuracy per channel and recognizer language model, per voice, a confusion table,
per-turn decode time and real-time factor, and what the engine's own loop spends on a turn
when the decode runs in the recognizer process (submit + polls). Plot: artifacts/bench_intents.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.agents.receptionist.asr import DEFAULT_MODE, MODES, make_decoder, transcribe
from engine.agents.receptionist.intents import classify
from engine.agents.receptionist.script import FALLBACK, INTENT_NAMES
from engine.data import synth, voices
from gateway.config import REPO_ROOT

ARTIFACTS = REPO_ROOT / "artifacts"
LABELS = (*INTENT_NAMES, FALLBACK.name)


@dataclass
class Outcome:
    mode: str
    channel: str
    voice: str
    truth: str
    predicted: str
    text: str
    heard: str
    decode_s: float
    audio_s: float


def _items(args: argparse.Namespace) -> list[tuple[synth.Item | dict[str, object], np.ndarray]]:
    """(item, audio) pairs: from a corpus made by `talkover data synth`, or synthesized now."""
    splits = ("train", "heldout") if args.split == "both" else (args.split,)
    if args.corpus:
        recs = [r for r in synth.read_manifest(args.corpus) if r["kind"] == "caller" and r["split"] in splits]
        progress = synth.Progress(len(recs), "load")
        out = []
        for r in recs:
            out.append((r, voices.read_wav(args.corpus / str(r["path"]))))
            progress.step()
        return out
    items = synth.plan(args.seed, args.size, splits, agent=False)
    progress = synth.Progress(len(items), "synth")
    out2: list[tuple[synth.Item | dict[str, object], np.ndarray]] = []
    for item, audio in synth.generate(items):
        out2.append((item, audio))
        progress.step()
    return out2


def _fields(item: synth.Item | dict[str, object]) -> tuple[str, str, str, str]:
    if isinstance(item, dict):
        return str(item["channel"]), str(item["voice"]), str(item["intent"]), str(item["text"])
    return ("clean" if item.line is None else "telephone"), item.voice.name, item.intent, item.text


def decode_all(pairs: list, modes: list[str], bwe: tuple[bool, ...] = (True,)) -> list[Outcome]:  # type: ignore[type-arg]
    """Every item by every recognizer LM, with and/or without the bandwidth extension of
    telephone-band turns (a row label without it ends in "-nobwe")."""
    outcomes = []
    for mode in modes:
        decoder = make_decoder(mode)
        for extend in bwe:
            label = mode if extend else f"{mode}-nobwe"
            progress = synth.Progress(len(pairs), f"decode ({label})")
            for item, audio in pairs:
                channel, voice, truth, text = _fields(item)
                if channel == "clean" and not extend and True in bwe:
                    progress.step()
                    continue  # a wide-band turn is never extended: the row would repeat
                tr = transcribe(decoder, audio.tobytes(), extend_band=extend)
                outcomes.append(Outcome(label, channel, voice, truth, classify(tr.text).intent, text, tr.text,
                                        tr.decode_s, tr.audio_s))
                progress.step()
    return outcomes


def engine_side_cost(pairs: list, n: int = 12) -> dict[str, float]:  # type: ignore[type-arg]
    """What the engine's loop spends per turn with the decode in the recognizer process: one
    submit, then a poll every 20 ms (as the turn controller does) until the transcript is back."""
    from engine.agents.receptionist.recognizer import Recognizer

    rec = Recognizer()
    if not rec.wait_ready(30):
        raise RuntimeError("recognizer process did not start")
    submit, polls, waited = [], [], []
    try:
        for _, audio in pairs[:n]:
            t0 = time.perf_counter()
            req = rec.submit(audio.tobytes())
            submit.append(time.perf_counter() - t0)
            start = time.monotonic()
            while True:
                t0 = time.perf_counter()
                res = rec.result(req)
                polls.append(time.perf_counter() - t0)
                if res is not None:
                    break
                time.sleep(0.02)
            waited.append(time.monotonic() - start)
    finally:
        rec.close()
    return {"turns": float(len(submit)), "submit_ms_max": max(submit) * 1e3, "poll_ms_p50": float(np.median(polls)) * 1e3,
            "poll_ms_max": max(polls) * 1e3, "waited_ms_p50": float(np.median(waited)) * 1e3}


def _accuracy(rows: list[Outcome]) -> tuple[float, int]:
    return (sum(o.predicted == o.truth for o in rows) / len(rows), len(rows)) if rows else (float("nan"), 0)


def report(outcomes: list[Outcome], cost: dict[str, float] | None) -> None:
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        groups[(o.mode, o.channel)].append(o)
    print("\nIntent accuracy (caller voices: %s)" % ", ".join(sorted({o.voice for o in outcomes})))
    print(f"{'recognizer LM':14s} {'channel':10s} {'intents':>14s} {'general->fallback':>18s} "
          f"{'decode p50':>10s} {'p95':>7s} {'RTF mean':>8s} {'p95':>6s}")
    for (mode, channel), rows in sorted(groups.items()):
        intent_rows = [o for o in rows if o.truth != FALLBACK.name]
        general = [o for o in rows if o.truth == FALLBACK.name]
        acc, n = _accuracy(intent_rows)
        gacc, gn = _accuracy(general)
        dec = np.array([o.decode_s for o in rows]) * 1e3
        rtf = np.array([o.decode_s / o.audio_s for o in rows])
        print(f"{mode:14s} {channel:10s} {acc * 100:8.1f} % ({n:3d}) {gacc * 100:10.1f} % ({gn:3d}) "
              f"{np.median(dec):7.0f} ms {np.percentile(dec, 95):4.0f} ms {rtf.mean():8.3f} {np.percentile(rtf, 95):6.3f}")
    print("\nPer voice (intents only)")
    for (mode, channel), rows in sorted(groups.items()):
        per = {v: _accuracy([o for o in rows if o.voice == v and o.truth != FALLBACK.name])[0]
               for v in sorted({o.voice for o in rows})}
        print(f"{mode:14s} {channel:10s} " + "  ".join(f"{v} {a * 100:5.1f} %" for v, a in per.items()))
    for (mode, channel), rows in sorted(groups.items()):
        print(f"\nConfusion ({mode} LM, {channel}): rows = asked, columns = answered")
        conf = Counter((o.truth, o.predicted) for o in rows)
        short = [label[:5] for label in LABELS]
        print(f"{'':10s}" + "".join(f"{s:>6s}" for s in short))
        for truth in LABELS:
            print(f"{truth:10s}" + "".join(f"{conf[(truth, p)] or '.':>6}" for p in LABELS))
    if cost:
        print(f"\nEngine loop per turn with the decode in the recognizer process ({cost['turns']:.0f} turns): "
              f"submit max {cost['submit_ms_max']:.2f} ms, poll p50 {cost['poll_ms_p50']:.3f} ms / max "
              f"{cost['poll_ms_max']:.2f} ms; transcript back after p50 {cost['waited_ms_p50']:.0f} ms "
              "(decoding in the engine's own thread would hold its loop for the whole decode: pocketsphinx keeps the GIL)")
    wrong = [o for o in outcomes if o.predicted != o.truth][:15]
    if wrong:
        print("\nSome misses: asked | heard | answered")
        for o in wrong:
            print(f"  [{o.mode}/{o.channel}/{o.voice}] {o.text} | {o.heard or '(nothing)'} | {o.predicted}")


def plot(outcomes: list[Outcome], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no plot (pip install '.[bench]')", file=sys.stderr)
        return None
    keys = sorted({(o.mode, o.channel) for o in outcomes})
    fig, axes = plt.subplots(1, len(keys), figsize=(6.2 * len(keys), 5.6), squeeze=False)
    for ax, (mode, channel) in zip(axes[0], keys):
        rows = [o for o in outcomes if (o.mode, o.channel) == (mode, channel)]
        m = np.zeros((len(LABELS), len(LABELS)))
        for o in rows:
            m[LABELS.index(o.truth), LABELS.index(o.predicted)] += 1
        m = m / np.maximum(1, m.sum(axis=1, keepdims=True))
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(LABELS)), LABELS, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(LABELS)), LABELS, fontsize=8)
        acc, n = _accuracy([o for o in rows if o.truth != FALLBACK.name])
        ax.set_title(f"{mode} LM, {channel}: {acc * 100:.1f} % of {n} intent turns", fontsize=9)
        ax.set_xlabel("answered")
        ax.set_ylabel("asked")
        for i in range(len(LABELS)):
            for j in range(len(LABELS)):
                if m[i, j] >= 0.05:
                    ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=6,
                            color="white" if m[i, j] > 0.5 else "black")
    fig.suptitle("Receptionist intents on caller voices: " + ", ".join(sorted({o.voice for o in outcomes})), fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def from_args(args: argparse.Namespace) -> int:
    modes = list(MODES) if args.asr == "both" else [args.asr]
    pairs = _items(args)
    bwe = {"on": (True,), "off": (False,), "both": (True, False)}[args.bwe]
    outcomes = decode_all(pairs, modes, bwe)
    cost = None if args.no_engine_cost else engine_side_cost(pairs)
    report(outcomes, cost)
    out = plot(outcomes, ARTIFACTS / f"bench_intents{'' if args.split == 'heldout' else '_' + args.split}.png")
    if out:
        print(f"\nplot: {out}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`talkover bench intents`' options."""
    p.add_argument("--split", choices=("heldout", "train", "both"), default="heldout",
                   help="caller voices to measure (tune only on train)")
    p.add_argument("--asr", choices=(*MODES, "both"), default=DEFAULT_MODE, help="recognizer language model")
    p.add_argument("--corpus", type=Path, help="a `talkover data synth` directory (default: synthesize now)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=1, help="takes per caller line (when synthesizing)")
    p.add_argument("--bwe", choices=("on", "off", "both"), default="both",
                   help="bandwidth extension of telephone-band turns (what the agent does: on); both = side by side")
    p.add_argument("--no-engine-cost", action="store_true", help="skip the recognizer-process timing")
