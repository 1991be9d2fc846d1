"""`talkover train lm`: the unit LM trained to speak the agent's replies; codec and vocoder frozen.

Data: an agent-speech corpus (`talkover train lm-corpus`: piper joe + its phoneme alignments)
and, for the caller's side, a `talkover data synth` corpus (its training caller clips). Both
are coded once by the frozen codec (`codes.pt` in the output directory, rebuilt when the codec
or the corpus changes); every step then cuts rows from codes (engine/train/lm_examples.py).

The output directory is a complete checkpoint (`config.json` + `model.safetensors`: the codec's
tensors with the trained LM) plus `frontend.json` (phoneme map and duration table),
`train_state.pt` (optimizer, step, time spent, history) and `loss.png`. `--resume` continues it.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from engine.model.checkpoint import load_checkpoint, resolve_device, save_checkpoint
from engine.model.config import ModelConfig
from engine.model.lm import LMInputs
from engine.model.model import NEUTRAL_PROSODY, SpeechModel
from engine.model.phonemes import Frontend
from engine.train.clock import TrainingClock, configure_cpu
from engine.train.lm_examples import Batch, ExampleSampler

STATE_FILE = "lm_train_state.pt"
SIGNAL_WEIGHT = 0.2


@dataclass
class LMTrainOptions:
    data: Path  # agent-speech corpus (engine/train/lm_corpus.py)
    codec: Path  # checkpoint whose encoder, RVQ and vocoder are used (frozen)
    out: Path
    callers: Path | None = None  # `talkover data synth` corpus for caller clips
    minutes: float | None = None
    steps: int | None = None
    resume: bool = False
    device: str = "cpu"
    batch: int = 16
    frames: int = 200  # steps per training row (8 s of 40 ms frames)
    lr: float = 1e-3
    threads: int = 2
    save_every_s: float = 180.0
    log_every_s: float = 15.0
    seed: int = 0
    lm_dim: int | None = None  # override the codec checkpoint's LM shape
    lm_layers: int | None = None
    lm_ffn: int | None = None
    init_lm: Path | None = None  # start the LM from this checkpoint's LM (e.g. one trained on an earlier codec)
    utterance_limit: int | None = None  # the corpus's first N replies only


@dataclass
class LMHistory:
    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    code_ce: list[float] = field(default_factory=list)  # per codebook, mean over the log window
    top1: list[float] = field(default_factory=list)  # codebook-0 accuracy on speech frames


def lr_at(base: float, progress: float) -> float:
    warm = min(1.0, 0.05 + progress / 0.03)
    return base * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def lm_config(base: ModelConfig, opts: LMTrainOptions) -> ModelConfig:
    cfg = ModelConfig.from_dict(asdict(base))
    if opts.lm_dim:
        cfg.lm.dim = opts.lm_dim
    if opts.lm_layers:
        cfg.lm.layers = opts.lm_layers
    if opts.lm_ffn:
        cfg.lm.ffn_dim = opts.lm_ffn
    # The LM must never attend further back than its training rows reach: measured on the shipped
    # LM (rows of 200, context 250), a reply that began over 200 frames into a call came out silent.
    cfg.lm.context = min(cfg.lm.context, opts.frames)
    cfg.validate()
    return cfg


def build_model(opts: LMTrainOptions) -> tuple[SpeechModel, bool]:
    """(model, resumed): the checkpoint in `out` on --resume, else the codec with a fresh LM."""
    if opts.resume and (opts.out / "model.safetensors").is_file():
        return load_checkpoint(opts.out), True
    if opts.resume:
        print(f"resume: no checkpoint in {opts.out} yet, starting fresh", file=sys.stderr)
    codec = load_checkpoint(opts.codec)
    cfg = lm_config(codec.cfg, opts)
    cfg.seed = opts.seed
    model = SpeechModel(cfg)
    own = model.state_dict()
    lm_src = load_checkpoint(opts.init_lm).state_dict() if opts.init_lm else own
    lm_tensors = {k: v for k, v in lm_src.items() if k.startswith("lm.")}
    bad = [k for k, v in lm_tensors.items() if own[k].shape != v.shape]
    if bad:
        raise ValueError(f"--init-lm {opts.init_lm}: {bad[0]} has shape {tuple(lm_tensors[bad[0]].shape)}, "
                         f"this LM needs {tuple(own[bad[0]].shape)}")
    model.load_state_dict({k: v for k, v in codec.state_dict().items() if not k.startswith("lm.")} | lm_tensors)
    return model, False


def lm_loss(model: SpeechModel, batch: Batch, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, per-codebook CE [n_q], codebook-0 accuracy on speech targets)."""
    t = {k: torch.from_numpy(v).to(device) for k, v in batch.__dict__.items()}
    b, n = t["text"].shape
    inp = LMInputs(t["caller"], t["agent_in"], t["text"], torch.zeros_like(t["text"]),
                   torch.zeros(b, model.cfg.lm.speaker_dim, device=device),
                   torch.tensor([NEUTRAL_PROSODY], device=device).expand(b, 4))
    logits, signals = model.lm.offline(inp)
    target = t["target"]
    ce = nn.functional.cross_entropy(logits.flatten(0, 2), target.flatten().clamp_min(0), reduction="none")
    valid = (target >= 0).flatten().float()
    per_q = (ce * valid).view(b, n, -1).sum((0, 1)) / valid.view(b, n, -1).sum((0, 1)).clamp_min(1)
    loss = per_q.mean()
    for k, col in (("reply_over", 1), ("turn_over", 0)):
        y = t[k]
        m = ~torch.isnan(y)
        if m.any():
            loss = loss + SIGNAL_WEIGHT * nn.functional.binary_cross_entropy_with_logits(signals[..., col][m], y[m])
    with torch.no_grad():
        speech = t["speech"]
        acc = (logits[..., 0, :].argmax(-1) == target[..., 0])[speech].float().mean()
    return loss, per_q.detach(), acc


def save(model: SpeechModel, opt: torch.optim.Optimizer, step: int, elapsed_s: float, history: LMHistory,
         out: Path, frontend: Frontend) -> None:
    save_checkpoint(model, out)
    frontend.save(out)
    tmp = out / (STATE_FILE + ".tmp")
    torch.save({"step": step, "elapsed_s": elapsed_s, "optimizer": opt.state_dict(), "history": asdict(history)}, tmp)
    tmp.replace(out / STATE_FILE)
    plot_lm_history(history, out / "loss.png")


def plot_lm_history(history: LMHistory, path: Path) -> Path | None:
    from gateway.bench.plotting import pyplot, save as save_fig

    plt = pyplot()
    if plt is None or not history.step:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(history.step, history.loss, label="total")
    codes = np.array(history.code_ce)
    for q in range(codes.shape[1] if codes.ndim == 2 else 0):
        ax1.plot(history.step, codes[:, q], label=f"CE codebook {q}", lw=0.8)
    ax1.set_xlabel("step")
    ax1.set_title("unit LM training loss")
    ax1.legend(fontsize=7)
    ax2.plot(history.step, [100 * a for a in history.top1])
    ax2.set_xlabel("step")
    ax2.set_ylabel("%")
    ax2.set_title("codebook-0 top-1 accuracy (speech frames)")
    save_fig(fig, path)
    return path


def train_lm(opts: LMTrainOptions) -> dict[str, float]:
    from engine.train.lm_codes import coded_corpus

    if opts.minutes is None and opts.steps is None:
        raise ValueError("give --minutes or --steps")
    configure_cpu(opts.threads)
    torch.manual_seed(opts.seed)
    device = resolve_device(opts.device)
    model, resumed = build_model(opts)
    corpus, frontend, stats = coded_corpus(model, opts.data, opts.callers, opts.out, opts.utterance_limit)
    model.to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    params = list(model.lm.parameters())
    for p in params:
        p.requires_grad_(True)
    model.lm.train()
    state = torch.load(opts.out / STATE_FILE, map_location="cpu", weights_only=False) \
        if resumed and (opts.out / STATE_FILE).is_file() else None
    step0 = int(state["step"]) if state else 0
    sampler = ExampleSampler(corpus, opts.frames, frontend.lead_frames, model.lm.pad, model.lm.card,
                             seed=opts.seed + step0)
    opt = torch.optim.AdamW(params, lr=opts.lr, betas=(0.9, 0.98), weight_decay=0.01)
    history, prior_s = LMHistory(), 0.0
    if state:
        opt.load_state_dict(state["optimizer"])
        history, prior_s = LMHistory(**state["history"]), float(state["elapsed_s"])
    print(f"train lm: {model.cfg.name} LM {sum(p.numel() for p in params) / 1e6:.2f} M params "
          f"({model.cfg.lm.dim} wide x {model.cfg.lm.layers}), {stats}, batch {opts.batch} x {opts.frames} frames, "
          f"from step {step0}, device {device}, {torch.get_num_threads()} threads", file=sys.stderr, flush=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    clock = TrainingClock(step0, opts.minutes, opts.steps, opts.log_every_s, opts.save_every_s, prior_s)
    window: list[tuple[float, np.ndarray, float]] = []
    while (progress := clock.progress()) is not None:
        for g in opt.param_groups:
            g["lr"] = lr_at(opts.lr, progress)
        loss, per_q, acc = lm_loss(model, sampler.batch(opts.batch), device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        clock.step += 1
        step = clock.step
        window.append((loss.item(), per_q.cpu().numpy(), acc.item()))
        now = time.monotonic()
        if clock.log_due(now):
            history.step.append(step)
            history.loss.append(float(np.mean([w[0] for w in window])))
            history.code_ce.append([float(x) for x in np.mean([w[1] for w in window], 0)])
            history.top1.append(float(np.mean([w[2] for w in window])))
            rate, eta = clock.rate_eta(now)
            ce = " ".join(f"{x:.2f}" for x in history.code_ce[-1])
            print(f"step {step} loss {history.loss[-1]:.3f} CE/codebook {ce} top-1 {history.top1[-1]:.1%} "
                  f"{rate} lr {opt.param_groups[0]['lr']:.1e} {eta}", file=sys.stderr, flush=True)
            window = []
        if clock.save_due(now):
            model.lm.eval()
            save(model, opt, step, clock.elapsed_s(now), history, opts.out, frontend)
            model.lm.train()
    step = clock.step
    model.lm.eval()
    save(model, opt, step, clock.elapsed_s(), history, opts.out, frontend)
    print(f"saved {opts.out} at step {step}", file=sys.stderr)
    return {"step": float(step), "first_loss": history.loss[0] if history.loss else float("nan"),
            "last_loss": history.loss[-1] if history.loss else float("nan")}


def export_half(src: Path, dst: Path) -> Path:
    """The checkpoint in `src` as float16 tensors (half the bytes; load_checkpoint casts them back to
    float32) with its config and frontend, for shipping in the repository."""
    from safetensors.torch import save_file

    from engine.model.checkpoint import CONFIG_FILE, WEIGHTS_FILE

    model = load_checkpoint(src)
    dst.mkdir(parents=True, exist_ok=True)
    (dst / CONFIG_FILE).write_text(model.cfg.to_json())
    tensors = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
               for k, v in model.state_dict().items()}
    save_file(tensors, str(dst / WEIGHTS_FILE), metadata={"config": model.cfg.name, "dtype": "float16"})
    Frontend.load(src).save(dst)
    return dst

