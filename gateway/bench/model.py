"""`talkover bench model`: the shipped model on speech it never trained on (codec part).

Sets (engine/train/data.py says what is held out):
- agent: the agent's voice (piper joe) speaking every held-out sentence;
- caller: each held-out caller voice speaking the held-out sentences through a telephone line
  (8 kHz band, G.711 mu-law, line noise, sometimes echo), as the engine hears a PSTN caller.

Each clip goes through every condition (uncoded, talkover's codec streamed frame by frame,
Opus 6 kbit/s, AMR-NB 4.75 kbit/s) and is scored by pocketsphinx with its default en-us LM
(free-form: not the receptionist's domain LM) as word error rate against the script, and by
STOI against the uncoded clip. Printed: the table, the issue's bars as met / NOT met, the
codec's streaming real-time factor for one stream; plot: artifacts/bench_model.png.
`--diagnose` adds rows that split the codec's word errors between phases, quantizer and the rest
(gateway/bench/model_diagnose.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.agents.receptionist.asr import make_decoder, transcribe
from engine.agents.receptionist.intents import normalize
from engine.data import synth, voices
from engine.train.data import is_heldout_text
from gateway.bench.model_codecs import Condition, amr_nb, opus, talkover, uncoded
from gateway.bench.model_stoi import stoi
from gateway.config import REPO_ROOT

ARTIFACTS = REPO_ROOT / "artifacts"
SHIPPED = REPO_ROOT / "engine" / "model" / "weights" / "talk"
SHIPPED_AGENT = REPO_ROOT / "engine" / "model" / "weights" / "agent"  # codec + trained unit LM
AGENT_POINTS, CALLER_POINTS, MAX_KBPS = 5.0, 10.0, 1.1


@dataclass
class Clip:
    set: str  # "agent" | "caller"
    text: str
    audio: np.ndarray  # int16 16 kHz


@dataclass
class Score:
    set: str
    condition: str
    errors: int
    words: int
    stoi: float


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(substitutions + deletions + insertions, reference words) after the recognizer's normalisation."""
    ref, hyp = normalize(reference).split(), normalize(hypothesis).split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1], len(ref)


def heldout_clips(limit: int | None, seed: int) -> list[Clip]:
    texts = sorted({t for t, _ in synth.caller_lines("heldout")} | {i.text for i in synth.plan(seed, 1, (), True, False)})
    agent_texts = [t for t in texts if is_heldout_text(t)][:limit]
    items = [synth.Item(f"agent/{k}", "agent", t, "", voices.AGENT) for k, t in enumerate(agent_texts)]
    callers = [i for i in synth.plan(seed, 1, ("heldout",), agent=False)
               if i.line is not None and is_heldout_text(i.text)]
    taken: dict[str, int] = {}
    for item in callers:
        if limit is None or taken.get(item.voice.name, 0) < limit:
            taken[item.voice.name] = taken.get(item.voice.name, 0) + 1
            items.append(item)
    progress = synth.Progress(len(items), "synth held-out clips")
    clips = []
    for item, audio in synth.generate(items):
        clips.append(Clip(item.kind, item.text, audio))
        progress.step()
    return clips


def measure(clips: list[Clip], conditions: list[Condition]) -> list[Score]:
    decoder = make_decoder("freeform")
    progress = synth.Progress(len(clips) * len(conditions), "decode")
    scores = []
    for cond in conditions:
        for clip in clips:
            coded = cond.apply(clip.audio)
            heard = transcribe(decoder, coded.tobytes()).text
            errors, words = word_errors(clip.text, heard)
            scores.append(Score(clip.set, cond.name, errors, words, stoi(clip.audio, coded)))
            progress.step()
    return scores


def summary(scores: list[Score], set_name: str, condition: str) -> tuple[float, float, int]:
    rows = [s for s in scores if s.set == set_name and s.condition == condition]
    wer = 100.0 * sum(s.errors for s in rows) / max(1, sum(s.words for s in rows))
    return wer, float(np.mean([s.stoi for s in rows])) if rows else float("nan"), len(rows)


def report(scores: list[Score], conditions: list[Condition], codec: Condition, frame_ms: float) -> list[tuple[str, bool]]:
    sets = [s for s in ("agent", "caller") if any(x.set == s for x in scores)]
    label = {"agent": "agent voice (clean)", "caller": "held-out callers (telephone)"}
    print(f"\n{'condition':<24} {'kbit/s nominal':>14} {'measured':>9}  " +
          "  ".join(f"{label[s] + ' WER %':>36} {'STOI':>5}" for s in sets))
    for c in conditions:
        cells = []
        for s in sets:
            wer, st, n = summary(scores, s, c.name)
            cells.append(f"{wer:>31.1f} (n={n:>2}) {st:>5.3f}")
        print(f"{c.name:<24} {c.nominal_bps / 1000:>14.2f} {c.measured_bps / 1000:>9.2f}  " + "  ".join(cells))
    print(f"\n{codec.name} streaming round trip, one stream, {torch.get_num_threads()} CPU thread(s), "
          f"{frame_ms:.0f} ms frames: real-time factor {codec.rtf:.3f} ({codec.audio_s:.0f} s of audio)")
    bars: list[tuple[str, bool]] = [(f"bitrate {codec.nominal_bps / 1000:.2f} kbit/s <= {MAX_KBPS} at "
                                     f"{1000 / frame_ms:.1f} Hz frames (12.5-50 Hz)",
                                     codec.nominal_bps <= MAX_KBPS * 1000 and 20 <= frame_ms <= 80)]
    for s, points in (("agent", AGENT_POINTS), ("caller", CALLER_POINTS)):
        if s not in sets:
            continue
        base, codec_wer = summary(scores, s, "uncoded")[0], summary(scores, s, codec.name)[0]
        bars.append((f"{label[s]}: codec WER {codec_wer:.1f} % within {points:g} points of uncoded {base:.1f} %",
                     codec_wer - base <= points))
        for other in conditions:
            if other.nominal_bps > 0 and other is not codec and not other.diagnostic:
                o = summary(scores, s, other.name)[0]
                bars.append((f"{label[s]}: codec WER {codec_wer:.1f} % beats {other.name} {o:.1f} %", codec_wer < o))
    bars.append((f"streaming real time on CPU, one stream (RTF {codec.rtf:.3f} < 1)", codec.rtf < 1.0))
    print("\nbars (issue 8):")
    for text, ok in bars:
        print(f"  [{'met' if ok else 'NOT met'}] {text}")
    return bars


def plot(scores: list[Score], conditions: list[Condition], path: Path) -> None:
    from gateway.bench.plotting import NO_MATPLOTLIB, pyplot, save

    plt = pyplot()
    if plt is None:
        print(NO_MATPLOTLIB)
        return
    sets = [s for s in ("agent", "caller") if any(x.set == s for x in scores)]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(conditions)
    for k, c in enumerate(conditions):
        wers = [summary(scores, s, c.name)[0] for s in sets]
        stois = [summary(scores, s, c.name)[1] for s in sets]
        xs = np.arange(len(sets)) + k * width
        axes[0].bar(xs, wers, width, label=f"{c.name}")
        axes[1].bar(xs, stois, width, label=f"{c.name}")
    for ax, title in zip(axes, ("pocketsphinx free-form WER % (lower is better)", "STOI (higher is better)")):
        ax.set_xticks(np.arange(len(sets)) + 0.4 - width / 2, ["agent voice", "held-out callers, telephone"])
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=8)
    axes[1].set_ylim(0, 1)
    print(save(fig, path))


def from_args(args: argparse.Namespace) -> int:
    from engine.model.checkpoint import load_model

    torch.set_num_threads(args.threads)
    if args.part == "lm":
        return _lm_part(args)
    if args.part == "prosody":
        return _prosody_part(args)
    model = load_model(str(args.model))
    codec = talkover(model)
    conditions = [uncoded(), codec, opus(6000), amr_nb(4750)]
    if args.diagnose:
        from gateway.bench.model_diagnose import magnitude_only, unquantized

        conditions += [magnitude_only(conditions[0]), magnitude_only(codec), unquantized(model)]
    t0 = time.monotonic()
    clips = heldout_clips(args.limit, args.seed)
    scores = measure(clips, conditions)
    print(f"\ncodec {args.model} ({model.cfg.name}); {sum(c.set == 'agent' for c in clips)} agent clips, "
          f"{sum(c.set == 'caller' for c in clips)} caller clips; {time.monotonic() - t0:.0f} s", file=sys.stderr)
    report(scores, conditions, codec, model.cfg.frame_ms)
    plot(scores, conditions, args.plot)
    return _lm_part(args) + _prosody_part(args) if args.part == "all" else 0


def _prosody_part(args: argparse.Namespace) -> int:
    from gateway.bench.model_prosody import run

    if not (Path(args.lm_model) / "frontend.json").is_file():
        print(f"\nprosody part skipped: {args.lm_model} has no trained LM")
        return 0
    run(Path(args.lm_model), args.prosody_sentences, args.seed)
    return 0


def _lm_part(args: argparse.Namespace) -> int:
    from gateway.bench.model_lm import run_lm_bench

    if not (Path(args.lm_model) / "frontend.json").is_file():
        print(f"\nunit LM part skipped: {args.lm_model} has no trained LM (frontend.json); `talkover train lm` makes one")
        return 0
    run_lm_bench(Path(args.lm_model), args.lm_sentences, args.seed, args.plot.with_name(args.plot.stem + "_lm.png"))
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """`talkover bench model`'s options (the codec part; the unit LM part comes with its training)."""
    p.add_argument("--model", default=str(SHIPPED), help="checkpoint directory or preset (default: the shipped talk)")
    p.add_argument("--limit", type=int, help="at most N agent clips and N clips per held-out caller voice (quick run)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for the codec (RTF is per stream)")
    p.add_argument("--seed", type=int, default=0, help="line conditions of the telephone band")
    p.add_argument("--plot", type=Path, default=ARTIFACTS / "bench_model.png")
    p.add_argument("--part", choices=("all", "codec", "lm", "prosody"), default="all",
                   help="codec round trip, unit LM, prosody controls + 10-minute speaker consistency, or all")
    p.add_argument("--diagnose", action="store_true",
                   help="codec part: add rows that split its word errors (phases rebuilt from magnitudes; no RVQ)")
    p.add_argument("--prosody-sentences", type=int, default=12, help="held-out sentences for the prosody controls")
    p.add_argument("--lm-model", default=str(SHIPPED_AGENT), help="checkpoint with the trained unit LM + frontend.json")
    p.add_argument("--lm-sentences", type=int, default=50, help="held-out domain sentences the unit LM speaks")
