"""`talkover bench model`, unit-LM part: the trained LM + vocoder speaking held-out domain
sentences the way the engine runs it (all sentences as rows of one batch, `SpeechModel.step`
frame by frame, the reply's phoneme timeline popped one token per frame, the caller's side a
quiet line), scored by pocketsphinx free-form WER against the text.

Side by side in the same run: piper itself (the voice the LM learnt) on the same sentences,
piper's audio through the codec (encoded and vocoded: what the LM could at best reach, since it
speaks in the codec's codes), and two negative controls that must score far worse: each sentence scored against another
sentence's LM audio, and the LM's codes with their frames shuffled in time before vocoding.
An ASR-free measure beside it: the log-mel distance after DTW alignment between the LM's audio
and piper-through-the-codec of the same sentence, against that of another sentence (does the LM
say its own sentence, whatever the codec's intelligibility?). A barge-in check runs the same
replies with a held-out caller voice talking over them and compares the agent's level and its
reply-over signal just after the caller's onset with the same frames undisturbed.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.model.model import SpeechModel
from engine.model.phonemes import Frontend
from engine.model.speak import TAIL_FRAMES, Spoken, speak

WER_BAR = 40.0
CONTROL_MARGIN = 30.0  # points a control must score worse than the LM


@torch.no_grad()
def vocode(model: SpeechModel, codes: np.ndarray) -> np.ndarray:
    pcm, _ = model.vocode(torch.from_numpy(codes).to(model.device))
    return pcm.float().cpu().numpy()


@torch.no_grad()
def round_trip(model: SpeechModel, clip: np.ndarray) -> np.ndarray:
    """An int16 clip encoded and vocoded by the model's codec (offline: equal to streaming)."""
    usable = clip[: clip.size // model.cfg.frame_samples * model.cfg.frame_samples]
    codes, _, _ = model.encode(torch.from_numpy(usable.astype(np.float32)[None] / 32768.0).to(model.device))
    return to_int16(vocode(model, codes.cpu().numpy())[0])


def to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 32767.0, -32768, 32767).astype(np.int16)


def frame_dbfs(pcm: np.ndarray, frame: int) -> np.ndarray:
    n = pcm.shape[-1] // frame
    x = pcm[..., : n * frame].reshape(*pcm.shape[:-1], n, frame)
    return 10 * np.log10(np.mean(x * x, -1) + 1e-10)


def wer(texts: list[str], clips: list[np.ndarray], decoder) -> tuple[float, list[str]]:  # type: ignore[no-untyped-def]
    from engine.agents.receptionist.asr import transcribe

    heard = [transcribe(decoder, c.tobytes()).text for c in clips]
    return score(texts, heard), heard


def score(texts: list[str], heard: list[str]) -> float:
    from gateway.bench.model import word_errors

    e = w = 0
    for ref, hyp in zip(texts, heard):
        de, dw = word_errors(ref, hyp)
        e, w = e + de, w + dw
    return 100.0 * e / max(1, w)


@dataclass
class BargeIn:
    level_with: float  # mean dBFS of the agent over the window after the caller's onset
    level_without: float  # the same frames of the same replies with nobody talking over them
    over_with: float  # share of those frames with the reply-over signal on
    over_without: float


def barge_in(model: SpeechModel, frontend: Frontend, texts: list[str], seed: int, undisturbed: Spoken) -> BargeIn:
    """The replies again with a held-out caller voice talking over each from a random frame:
    the agent's level and reply-over signal in frames REACT..REACT+10 after the caller's first
    frame, against the same frames of the undisturbed run."""
    from engine.data import voices
    from engine.train.lm_examples import REACT_FRAMES

    frame = model.cfg.frame_samples
    rng = np.random.default_rng(seed)
    caller_voice = voices.BY_NAME["espeak-us-f3"]  # a held-out caller voice
    interjection = voices.say(caller_voice, "Sorry, wait a moment, I have a question.").astype(np.float32) / 32768
    queues = [len(frontend.reply_tokens(t)) for t in texts]
    starts = [frontend.lead_frames + int(rng.integers(3, max(4, n - 14))) for n in queues]
    steps = undisturbed.pcm.shape[1] // frame
    caller = rng.normal(0.0, 1e-4, (len(texts), steps * frame)).astype(np.float32)
    for r, s in enumerate(starts):
        seg = interjection[: max(0, steps * frame - s * frame)]
        caller[r, s * frame: s * frame + seg.size] += seg
    spoken = speak(model, frontend, texts, caller)
    win = [slice(s + REACT_FRAMES, s + REACT_FRAMES + 10) for s in starts]
    lw, lo = frame_dbfs(spoken.pcm, frame), frame_dbfs(undisturbed.pcm, frame)
    return BargeIn(float(np.mean([lw[r, w].mean() for r, w in enumerate(win)])),
                   float(np.mean([lo[r, w].mean() for r, w in enumerate(win)])),
                   float(np.mean([(spoken.reply_over[r, w] >= 0.5).mean() for r, w in enumerate(win)])),
                   float(np.mean([(undisturbed.reply_over[r, w] >= 0.5).mean() for r, w in enumerate(win)])))


def log_mel_frames(clip: np.ndarray) -> np.ndarray:
    """[frames, 40] log-mel of an int16 clip, 20 ms hop, each band's mean removed (level-free)."""
    from engine.train.losses import log_mel

    x = torch.from_numpy(clip.astype(np.float32) / 32768.0)[None]
    m = log_mel(x, n_fft=512, hop=320, n_mels=40)[0].T.numpy()
    return m - m.mean(0, keepdims=True)


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean L1 log-mel distance along the best monotonic alignment of two clips' frames."""
    cost = np.abs(a[:, None, :] - b[None, :, :]).mean(-1)
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(1, n + 1):
        diag = np.minimum(acc[i - 1, 1:], acc[i - 1, :-1]) + cost[i - 1]
        row = acc[i]
        for j in range(1, m + 1):
            row[j] = min(diag[j - 1], row[j - 1] + cost[i - 1, j - 1])
    return float(acc[n, m] / (n + m))


def run_lm_bench(checkpoint: Path, count: int, seed: int, plot_path: Path | None) -> list[tuple[str, bool]]:
    from engine.agents.receptionist.asr import make_decoder
    from engine.data import voices
    from engine.model.checkpoint import load_checkpoint
    from engine.train.lm_sentences import heldout_texts

    t0 = time.monotonic()
    model = load_checkpoint(checkpoint)
    frontend = Frontend.load(checkpoint)
    texts = heldout_texts(count)
    frame = model.cfg.frame_samples
    spoken = speak(model, frontend, texts, seed=seed)
    lm_clips = [to_int16(spoken.pcm[r, : n * frame]) for r, n in enumerate(spoken.lengths)]
    lm_s = time.monotonic() - t0
    print(f"unit LM: {len(texts)} held-out sentences spoken in {lm_s:.0f} s "
          f"({sum(spoken.lengths) * frame / 16000:.0f} s of audio)", file=sys.stderr, flush=True)
    decoder = make_decoder("freeform")
    piper_clips = [voices.say(voices.AGENT, t) for t in texts]
    rng = np.random.default_rng(seed)
    shuffled = []
    for r, n in enumerate(spoken.lengths):
        codes = spoken.codes[r: r + 1, :n].copy()
        codes[0] = codes[0, rng.permutation(n)]
        shuffled.append(to_int16(vocode(model, codes)[0]))
    ceiling = [round_trip(model, c) for c in piper_clips]
    lm_wer, lm_heard = wer(texts, lm_clips, decoder)
    piper_wer, _ = wer(texts, piper_clips, decoder)
    ceiling_wer, _ = wer(texts, ceiling, decoder)
    shuffled_wer, _ = wer(texts, shuffled, decoder)
    other_wer = score(texts, lm_heard[1:] + lm_heard[:1])
    mels_lm = [log_mel_frames(c) for c in lm_clips]
    mels_ref = [log_mel_frames(c) for c in ceiling]
    same = float(np.mean([dtw_distance(a, b) for a, b in zip(mels_lm, mels_ref)]))
    other = float(np.mean([dtw_distance(a, b) for a, b in zip(mels_lm, mels_ref[1:] + mels_ref[:1])]))
    barge = barge_in(model, frontend, texts, seed, spoken)
    print(f"\n{'unit LM part':<44} {'WER %':>7}   (pocketsphinx free-form, {len(texts)} held-out domain sentences)")
    print(f"{'piper joe (the voice the LM learnt)':<44} {piper_wer:>7.1f}")
    print(f"{'piper through the codec (the LM`s ceiling)':<44} {ceiling_wer:>7.1f}")
    print(f"{'unit LM + vocoder, streamed like the engine':<44} {lm_wer:>7.1f}")
    print(f"{'control: another sentence`s LM audio':<44} {other_wer:>7.1f}")
    print(f"{'control: LM codes shuffled in time':<44} {shuffled_wer:>7.1f}")
    print(f"\nlog-mel distance after DTW alignment (ASR-free; the reference is piper through the codec):\n"
          f"  LM audio vs the same sentence {same:.3f}, vs another sentence {other:.3f} "
          f"({100 * (other - same) / other:.1f} % closer to its own sentence)")
    for k in range(min(3, len(texts))):
        print(f"  e.g. said {texts[k]!r}\n       heard {lm_heard[k]!r}")
    print(f"\nbarge-in (a held-out caller talks over each reply from a random frame), frames 4-14 after its onset:\n"
          f"  agent level {barge.level_with:.1f} dBFS, undisturbed {barge.level_without:.1f} dBFS; "
          f"reply-over signal on {barge.over_with:.0%} of them, undisturbed {barge.over_without:.0%}")
    bars = [(f"unit LM + vocoder WER {lm_wer:.1f} % <= {WER_BAR:g} % (piper itself {piper_wer:.1f} %)", lm_wer <= WER_BAR),
            (f"negative controls far worse: {other_wer:.1f} % and {shuffled_wer:.1f} % >= LM + {CONTROL_MARGIN:g} points",
             min(other_wer, shuffled_wer) >= lm_wer + CONTROL_MARGIN)]
    print("\nbars (issue 8, unit LM):")
    for text, ok in bars:
        print(f"  [{'met' if ok else 'NOT met'}] {text}")
    if plot_path is not None:
        plot(plot_path, [("piper", piper_wer), ("piper via\ncodec", ceiling_wer), ("unit LM", lm_wer),
                         ("ctl: other\nsentence", other_wer),
                         ("ctl: shuffled\nframes", shuffled_wer)])
    return bars


def plot(path: Path, bars: list[tuple[str, float]]) -> None:
    from gateway.bench.plotting import NO_MATPLOTLIB, pyplot, save

    plt = pyplot()
    if plt is None:
        print(NO_MATPLOTLIB)
        return
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.bar([n for n, _ in bars], [v for _, v in bars], color=["grey", "tab:grey", "tab:blue", "tab:red", "tab:red"])
    ax.axhline(WER_BAR, color="k", ls="--", lw=0.8, label=f"bar {WER_BAR:g} %")
    ax.set_ylabel("WER % (pocketsphinx free-form)")
    ax.set_title("unit LM + vocoder on held-out domain sentences", fontsize=10)
    ax.legend(fontsize=8)
    print(save(fig, path))


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="unit LM part of talkover bench model")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--count", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--plot", type=Path, default=Path("artifacts/bench_model_lm.png"))
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    bars = run_lm_bench(a.model, a.count, a.seed, a.plot)
    sys.exit(0)
