"""`talkover train ...` arguments; torch is imported only when a training command runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def _run_codec(args: argparse.Namespace) -> int:
    from engine.train.codec import TrainOptions, train

    opts = TrainOptions(data=args.data, out=args.out, config=args.config, minutes=args.minutes, steps=args.steps,
                        resume=args.resume, device=args.device, batch=args.batch, crop_ms=args.crop_ms, lr=args.lr,
                        threads=args.threads, save_every_s=args.save_every, seed=args.seed,
                        agent_share=args.agent_share, vocoder_only=args.vocoder_only,
                        phase_accumulate=args.phase_accumulate, phase_weight=args.phase_weight)
    if opts.minutes is None and opts.steps is None:
        opts.minutes = 30.0
    train(opts)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("codec", help="train the codec (encoder, RVQ, vocoder) on a `talkover data synth` corpus")
    p.add_argument("--data", type=Path, required=True, action="append",
                   help="corpus directory (manifest.jsonl + WAVs): `talkover data synth` output or a `talkover train "
                        "lm-corpus` directory (agent speech); repeat to train on several")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory (written every --save-every s)")
    p.add_argument("--config", default="talk", help="model config preset (default: talk)")
    budget = p.add_mutually_exclusive_group()
    budget.add_argument("--minutes", type=float, help="wall-clock budget, counted across --resume runs (default 30)")
    budget.add_argument("--steps", type=int, help="stop at this optimizer step")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--crop-ms", type=int, default=1280, help="training crop length (rounded to model frames)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads, at most 2 (default 1: with another job on the 2 cores, 2 threads ran 5x slower)")
    p.add_argument("--save-every", type=float, default=180.0, help="seconds between checkpoints")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--agent-share", type=float, default=0.25, help="share of every batch cut from agent speech")
    p.add_argument("--vocoder-only", action="store_true",
                   help="train the vocoder alone (codes unchanged: an LM trained on this codec still fits)")
    p.add_argument("--phase-accumulate", action="store_true",
                   help="switch the vocoder to the phase-accumulating head (its phase half starts at zero)")
    p.add_argument("--phase-weight", type=float, default=0.0,
                   help="weight of the instantaneous-frequency + group-delay losses (default 0: off)")
    p.set_defaults(func=_run_codec)
    __import__("engine.train.lm_cli", fromlist=["add_parsers"]).add_parsers(sub)
    __import__("engine.train.bwe", fromlist=["add_parser"]).add_parser(sub)
