"""`talkover train codec`: the codec (encoder + RVQ + vocoder) trained on a synthesized corpus.

Losses: multi-resolution STFT (spectral convergence + log-magnitude L1), log-mel L1, and the
RVQ commitment loss; codebooks follow the latents by EMA with dead-code re-initialisation.
`--phase-weight` adds the instantaneous-frequency and group-delay losses (losses.py).
`--vocoder-only` trains the vocoder alone: encoder, codebooks and projection stay as they are,
so every code means what it meant and a unit LM trained on this codec still speaks it.
`--phase-accumulate` switches a checkpoint's vocoder to the phase-accumulating head (its
phase half starts at zero: every bin advances at its centre frequency).
Every `save_every_s` the model goes to CKPT_DIR (`config.json` + `model.safetensors`, loadable
by engine.model.checkpoint) with `train_state.pt` beside it (optimizer, step, EMA buffers,
projection, loss history) and `loss.png`. `--resume` continues from there; without the state
file (e.g. the committed weights alone) it restarts the optimizer from the saved weights.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from engine.model.checkpoint import load_checkpoint, resolve_device, save_checkpoint
from engine.model.config import preset
from engine.model.model import SpeechModel
from engine.train.clock import TrainingClock, configure_cpu
from engine.train.codec_model import CodecTrainModule
from engine.train.data import CropSampler, load_training_clips
from engine.train.losses import log_mel_l1, multi_resolution_stft, phase_derivatives
from engine.train.plot import plot_history

STATE_FILE = "train_state.pt"
COMMIT_WEIGHT = 0.1


@dataclass
class TrainOptions:
    data: list[Path]
    out: Path
    config: str = "talk"
    minutes: float | None = None
    steps: int | None = None
    resume: bool = False
    device: str = "cpu"
    batch: int = 12
    crop_ms: int = 1280
    lr: float = 1e-3
    threads: int = 1
    save_every_s: float = 180.0
    log_every_s: float = 15.0
    seed: int = 0
    agent_share: float = 0.25  # of every batch: agent speech (the voice the LM speaks in)
    clip_limit: int | None = None  # tests: load only the first N training clips
    vocoder_only: bool = False
    phase_accumulate: bool = False
    phase_weight: float = 0.0  # of the instantaneous-frequency and group-delay losses


@dataclass
class History:
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    mel: list[float] = field(default_factory=list)
    usage: list[float] = field(default_factory=list)  # mean fraction of entries used per batch


def lr_at(base: float, progress: float) -> float:
    """Short warm-up, then cosine from `base` down to a tenth of it at the end of the budget."""
    warm = min(1.0, progress / 0.02) if progress < 0.02 else 1.0
    return base * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def with_phase_accumulation(model: SpeechModel) -> SpeechModel:
    """The same weights under a phase-accumulating vocoder head, its phase half zeroed."""
    if model.cfg.vocoder.phase_accumulate:
        return model
    cfg = model.cfg
    cfg.vocoder.phase_accumulate = True
    out = SpeechModel(cfg)
    out.load_state_dict(model.state_dict())
    out.frontend = model.frontend
    head, bins = out.vocoder.head, out.vocoder.bins
    with torch.no_grad():
        head.weight[bins:].zero_()
        head.bias[bins:].zero_()
    return out


def _restore(opts: TrainOptions, device: torch.device) -> tuple[CodecTrainModule, dict[str, object] | None]:
    if opts.resume and (opts.out / "model.safetensors").is_file():
        model = load_checkpoint(opts.out, "cpu")
        module = CodecTrainModule(with_phase_accumulation(model) if opts.phase_accumulate else model,
                                  vocoder_only=opts.vocoder_only)
        state_path = opts.out / STATE_FILE
        if state_path.is_file():
            state = torch.load(state_path, map_location="cpu", weights_only=False)
            module.projection.load_state_dict(state["projection"])
            module.quantizer.load_state_dict(state["quantizer"])
            return module.to(device), state
        module.recover_projection()
        module.quantizer.initialised.fill_(True)
        print(f"resume: {state_path} missing, fresh optimizer from the saved weights", file=sys.stderr)
        return module.to(device), None
    if opts.resume:
        print(f"resume: no checkpoint in {opts.out} yet, starting fresh", file=sys.stderr)
    if opts.vocoder_only:
        raise ValueError("--vocoder-only needs a trained codec to start from (--resume with one in --out)")
    cfg = preset(opts.config)
    cfg.seed = opts.seed
    cfg.vocoder.phase_accumulate = cfg.vocoder.phase_accumulate or opts.phase_accumulate
    return CodecTrainModule(SpeechModel(cfg)).to(device), None


def save(module: CodecTrainModule, opt: torch.optim.Optimizer, step: int, elapsed_s: float,
         history: History, out: Path) -> None:
    module.bake()
    save_checkpoint(module.model, out)
    tmp = out / (STATE_FILE + ".tmp")
    torch.save({"step": step, "elapsed_s": elapsed_s, "optimizer": opt.state_dict(),
                "projection": module.projection.state_dict(), "quantizer": module.quantizer.state_dict(),
                "history": asdict(history)}, tmp)
    tmp.replace(out / STATE_FILE)
    plot_history(history, out / "loss.png")


def train(opts: TrainOptions) -> dict[str, float]:
    if opts.minutes is None and opts.steps is None:
        raise ValueError("give --minutes or --steps")
    configure_cpu(opts.threads)
    torch.manual_seed(opts.seed)
    device = resolve_device(opts.device)
    module, state = _restore(opts, device)
    module.train()
    cfg = module.model.cfg
    crop = max(1, round(opts.crop_ms * cfg.sample_rate / 1000 / cfg.frame_samples)) * cfg.frame_samples
    clips = load_training_clips(opts.data, opts.clip_limit)
    step0 = int(state["step"]) if state else 0
    sampler = CropSampler(clips, crop, agent_share=opts.agent_share, seed=opts.seed + step0)
    opt = torch.optim.AdamW(module.trainable(), lr=opts.lr, betas=(0.8, 0.99), weight_decay=0.0)
    history = History()
    prior_s = 0.0
    if state:
        opt.load_state_dict(state["optimizer"])  # type: ignore[arg-type]
        history = History(**state["history"])  # type: ignore[arg-type]
        prior_s = float(state["elapsed_s"])  # type: ignore[arg-type]
    print(f"train codec: {cfg.name}, {len(clips)} clips ({sum(c.audio.size for c in clips) / 16000 / 60:.1f} min), "
          f"batch {opts.batch} x {crop / cfg.sample_rate:.2f} s, {cfg.bitrate:.0f} bit/s, "
          f"{sum(p.numel() for p in module.trainable()) / 1e6:.2f} M trainable, from step {step0}, "
          f"device {device}, {torch.get_num_threads()} threads", file=sys.stderr)
    opts.out.mkdir(parents=True, exist_ok=True)
    clock = TrainingClock(step0, opts.minutes, opts.steps, opts.log_every_s, opts.save_every_s, prior_s)
    window: list[tuple[float, float, float]] = []
    while (progress := clock.progress()) is not None:
        for g in opt.param_groups:
            g["lr"] = lr_at(opts.lr, progress)
        pcm = torch.from_numpy(sampler.batch(opts.batch)).to(device)
        out = module(pcm)
        sc, mag = multi_resolution_stft(out.pcm, pcm)
        mel = log_mel_l1(out.pcm, pcm)
        loss = sc + mag + mel + COMMIT_WEIGHT * out.commitment
        if opts.phase_weight:
            iaf, gd = phase_derivatives(out.pcm, pcm)
            loss = loss + opts.phase_weight * (iaf + gd)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.trainable(), 5.0)
        opt.step()
        clock.step += 1
        step = clock.step
        window.append((loss.item(), mel.item(), float(out.usage.mean())))
        now = time.monotonic()
        if clock.log_due(now):
            ls, ms, us = (float(np.mean(v)) for v in zip(*window))
            history.step.append(step), history.loss.append(ls), history.mel.append(ms), history.usage.append(us)
            rate, eta = clock.rate_eta(now)
            print(f"step {step} loss {ls:.3f} (log-mel L1 {ms:.3f}) codes used/batch {us:.0%} "
                  f"{rate} lr {opt.param_groups[0]['lr']:.1e} {eta}", file=sys.stderr, flush=True)
            window = []
        if clock.save_due(now):
            save(module, opt, step, clock.elapsed_s(now), history, opts.out)
    step = clock.step
    save(module, opt, step, clock.elapsed_s(), history, opts.out)
    print(f"saved {opts.out} at step {step}", file=sys.stderr)
    return {"step": float(step), "first_loss": history.loss[0] if history.loss else float("nan"),
            "last_loss": history.loss[-1] if history.loss else float("nan")}
