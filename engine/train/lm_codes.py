"""The LM's training material as codes of the frozen codec, and the frontend's duration table.

Agent replies, caller clips, line noise and silence are encoded once and cached in
OUT/codes.pt, keyed by a digest of the encoder and RVQ tensors and of the corpora, so a
resumed run or a rerun with the same codec skips the encoding.
"""

from __future__ import annotations

import hashlib
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from engine.data.synth import read_manifest
from engine.data.voices import read_wav
from engine.model.model import SpeechModel
from engine.model.phonemes import Frontend, frame_tokens, queue_lag_frames
from engine.train.data import is_training_record
from engine.train.lm_corpus import AlignedUtterance, read_corpus
from engine.train.lm_examples import CodedCorpus

CODES_FILE = "codes.pt"
MAX_CALLER_CLIPS = 300
ENCODE_BATCH = 16


def codec_digest(model: SpeechModel) -> str:
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith(("encoder.", "rvq.")):
            h.update(name.encode())
            h.update(t.detach().cpu().float().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_many(model: SpeechModel, clips: list[np.ndarray]) -> list[np.ndarray]:
    """Codes of each int16 clip (cut to whole frames); clips are padded into batches, which the
    causal encoder allows: padding after a clip never changes its codes."""
    frame = model.cfg.frame_samples
    order = np.argsort([c.size for c in clips])
    out: list[np.ndarray] = [np.zeros((0, model.cfg.encoder.n_codebooks), np.int64)] * len(clips)
    for i in range(0, len(order), ENCODE_BATCH):
        idx = order[i:i + ENCODE_BATCH]
        frames = [clips[j].size // frame for j in idx]
        pcm = np.zeros((len(idx), max(frames) * frame), np.float32)
        for r, j in enumerate(idx):
            pcm[r, : frames[r] * frame] = clips[j][: frames[r] * frame] / 32768.0
        codes, _, _ = model.encode(torch.from_numpy(pcm).to(model.device))
        for r, j in enumerate(idx):
            out[j] = codes[r, : frames[r]].cpu().numpy().astype(np.int64)
        if len(clips) > 4 * ENCODE_BATCH and (i // ENCODE_BATCH) % 20 == 19:
            print(f"  coded {i + len(idx)}/{len(clips)} clips", file=sys.stderr, flush=True)
    return out


def durations(frontend: Frontend, utts: list[tuple[list[int], list[float], float]]) -> dict[str, float]:
    """Mean seconds per phoneme id over folded alignments (the next onset minus this one)."""
    total: dict[int, float] = defaultdict(float)
    count: dict[int, int] = defaultdict(int)
    for ids, onsets, dur in utts:
        ends = list(onsets[1:]) + [dur]
        for i, a, b in zip(ids, onsets, ends):
            total[i] += b - a
            count[i] += 1
    return {str(i): round(total[i] / count[i], 5) for i in sorted(total)}


def _noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """The caller's side when nobody speaks: stretches of digital silence and of white/hum noise
    at -80..-45 dBFS."""
    out, n = [], int(seconds * 16000)
    while sum(x.size for x in out) < n:
        size = int(rng.integers(8000, 48000))
        level = 10 ** (rng.uniform(-80, -45) / 20) * 32768
        x = rng.standard_normal(size) * level
        if rng.random() < 0.3:
            x += level * 2 * np.sin(2 * np.pi * 60 * np.arange(size) / 16000)
        out.append(x if rng.random() > 0.15 else np.zeros(size))
    return np.clip(np.concatenate(out)[:n], -32768, 32767).astype(np.int16)


def _caller_clips(callers: Path | None, rng: np.random.Generator) -> tuple[list[np.ndarray], str]:
    if callers is None:
        return [], "none"
    recs = [r for r in read_manifest(callers) if r.get("kind") == "caller" and is_training_record(r)]
    pick = rng.permutation(len(recs))[:MAX_CALLER_CLIPS]
    paths = sorted(str(recs[i]["path"]) for i in pick)
    return [read_wav(callers / p) for p in paths], hashlib.sha1("\n".join(paths).encode()).hexdigest()[:12]


def coded_corpus(model: SpeechModel, data: Path, callers: Path | None, out: Path,
                 limit: int | None = None) -> tuple[CodedCorpus, Frontend, str]:
    frontend = Frontend.load(data)
    frontend.frame_s = model.cfg.frame_ms / 1000
    utts: list[AlignedUtterance] = read_corpus(data)[:limit]
    rng = np.random.default_rng(0)
    caller_audio, caller_key = _caller_clips(callers, rng)
    key = f"{codec_digest(model)}-{len(utts)}-{sum(u.audio.size for u in utts)}-{caller_key}"
    frame = model.cfg.frame_samples
    folded = [frontend.fold(u.ids, u.onsets_s) for u in utts]
    frontend.mean_s = durations(frontend, [(i, o, u.audio.size / 16000) for (i, o), u in zip(folded, utts)])
    tokens = [frame_tokens(i, o, frontend.frame_s, u.audio.size // frame) for (i, o), u in zip(folded, utts)]
    cache = out / CODES_FILE
    cached = torch.load(cache, weights_only=False) if cache.is_file() else None
    if cached is not None and cached.get("key") == key:
        corpus = CodedCorpus(cached["agent"], tokens, cached["caller"], cached["noise"], cached["silence"])
    else:
        t0 = time.monotonic()
        print(f"coding {len(utts)} replies and {len(caller_audio)} caller clips with the frozen codec ...",
              file=sys.stderr, flush=True)
        agent = encode_many(model, [u.audio for u in utts])
        caller = [c for c in encode_many(model, caller_audio) if len(c) > 2]
        noise = encode_many(model, [_noise(120.0, rng)])[0]
        silence = encode_many(model, [np.zeros(16000 * 10, np.int16)])[0][5:]
        corpus = CodedCorpus(agent, tokens, caller, noise, silence)
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"key": key, "agent": agent, "caller": caller, "noise": noise, "silence": silence}, cache)
        print(f"coded in {time.monotonic() - t0:.0f} s -> {cache}", file=sys.stderr, flush=True)
    seconds = sum(u.audio.size for u in utts) / 16000
    lags = np.concatenate([queue_lag_frames(o, frontend.frame_s) for _, o in folded])
    raw_rate = sum(len(u.ids) for u in utts) / seconds
    stats = (f"{len(utts)} replies ({seconds / 60:.1f} min), {sum(len(i) for i, _ in folded) / seconds:.1f} tokens/s "
             f"({raw_rate:.1f} with stress marks), queue lag p95 {np.percentile(lags, 95):.0f} max {lags.max()} frames, "
             f"{len(corpus.caller_codes)} caller clips")
    return corpus, frontend, stats
