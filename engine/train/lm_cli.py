"""`talkover train lm` and `talkover train lm-corpus` arguments (torch is imported when one runs)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run_lm(args: argparse.Namespace) -> int:
    from engine.train.lm import LMTrainOptions, train_lm

    opts = LMTrainOptions(data=args.data, codec=args.codec, out=args.out, callers=args.callers, minutes=args.minutes,
                          steps=args.steps, resume=args.resume, device=args.device, batch=args.batch,
                          frames=args.frames, lr=args.lr, threads=args.threads, save_every_s=args.save_every,
                          seed=args.seed, lm_dim=args.lm_dim, lm_layers=args.lm_layers, lm_ffn=args.lm_ffn,
                          init_lm=args.init_lm, utterance_limit=args.utterances)
    if opts.minutes is None and opts.steps is None:
        opts.minutes = 30.0
    train_lm(opts)
    return 0


def _run_corpus(args: argparse.Namespace) -> int:
    from engine.train.lm_corpus import run

    return run(args)


def _run_export(args: argparse.Namespace) -> int:
    from engine.train.lm import export_half

    print(f"wrote {export_half(args.src, args.dst)}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser("lm-export", help="copy a trained checkpoint as float16 tensors (for shipping)")
    e.add_argument("src", type=Path)
    e.add_argument("dst", type=Path)
    e.set_defaults(func=_run_export)
    c = sub.add_parser("lm-corpus", help="synthesize the agent's speech (piper joe) with phoneme alignments for `train lm`")
    from engine.train.lm_corpus import add_arguments

    add_arguments(c)
    c.set_defaults(func=_run_corpus)
    p = sub.add_parser("lm", help="train the unit LM (codec and vocoder frozen) to speak reply text")
    p.add_argument("--data", type=Path, required=True, help="agent-speech corpus from `talkover train lm-corpus`")
    p.add_argument("--codec", type=Path, required=True, help="codec checkpoint (encoder, RVQ, vocoder; frozen)")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory: codec + LM + frontend.json")
    p.add_argument("--callers", type=Path, help="`talkover data synth` corpus: caller clips for barge-in rows")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="wall-clock budget, counted across --resume runs (default 30)")
    budget.add_argument("--steps", type=int, help="stop at this optimizer step")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--frames", type=int, default=200, help="model frames per training row")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (at most 2)")
    p.add_argument("--save-every", type=float, default=180.0, help="seconds between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lm-dim", type=int, help="LM width (default: the codec checkpoint's config)")
    p.add_argument("--lm-layers", type=int)
    p.add_argument("--lm-ffn", type=int)
    p.add_argument("--utterances", type=int, help="use only the corpus's first N replies (coding them takes time)")
    p.add_argument("--init-lm", type=Path, help="start the LM from this checkpoint's LM (a warm start: e.g. "
                   "trained on an earlier state of the codec); the codec still comes from --codec")
    p.set_defaults(func=_run_lm)
