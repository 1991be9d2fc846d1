"""The unit LM's training recipe on a tiny config: the loss falls, --resume continues, the
training layout is what the engine's streaming step computes, and the text frontend keeps
every phoneme in order."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.data.voices import write_wav
from engine.model.checkpoint import load_checkpoint, save_checkpoint
from engine.model.config import preset
from engine.model.lm import LMInputs
from engine.model.model import NEUTRAL_PROSODY, TEXT_END, TEXT_PAD, SpeechModel, StepInputs
from engine.model.phonemes import Frontend, frame_tokens, queue_lag_frames
from engine.train.lm import STATE_FILE, LMTrainOptions, train_lm
from engine.train.lm_examples import IGNORE, REACT_FRAMES, CodedCorpus, ExampleSampler

RATE = 16000


def fake_corpus(root: Path, n: int = 6) -> Path:
    """Utterances of tones, one pitch per 'phoneme' id, with their alignment: a stand-in for piper."""
    rng = np.random.default_rng(0)
    id_map = {"^": 1, "$": 2, " ": 3, "ˈ": 120, **{c: 10 + k for k, c in enumerate("abcdefgh")}}
    Frontend(id_map=id_map).save(root)
    with open(root / "manifest.jsonl", "w") as f:
        for u in range(n):
            ids = [1] + [int(x) for x in rng.integers(10, 18, 12)] + [2]
            durs = rng.uniform(0.05, 0.15, len(ids))
            onsets = np.concatenate([[0.0], np.cumsum(durs)[:-1]])
            t = np.arange(int(durs.sum() * RATE)) / RATE
            freq = np.array(ids, float)[np.minimum(np.searchsorted(onsets, t, "right") - 1, len(ids) - 1)] * 30
            audio = (0.3 * np.sin(2 * np.pi * np.cumsum(freq) / RATE) * 32767).astype(np.int16)
            path = f"wav/{u:05d}.wav"
            write_wav(root / path, audio)
            f.write(json.dumps({"id": f"{u:05d}", "text": "x", "path": path, "ids": ids,
                                "onsets_s": onsets.tolist(), "duration_s": t.size / RATE}) + "\n")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("lm")
    codec = save_checkpoint(SpeechModel(preset("tiny")), root / "codec")
    return fake_corpus(root / "corpus"), codec


def options(setup: tuple[Path, Path], out: Path, steps: int, resume: bool = False) -> LMTrainOptions:
    corpus, codec = setup
    return LMTrainOptions(data=corpus, codec=codec, out=out, steps=steps, resume=resume, batch=4, frames=24,
                          lr=3e-3, log_every_s=0.0, save_every_s=1e9, lm_dim=64, lm_layers=2, lm_ffn=128)


def test_tiny_lm_loss_falls_and_checkpoint_loads(setup: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "lm"
    result = train_lm(options(setup, out, steps=40))
    assert result["last_loss"] < result["first_loss"] - 0.5, result
    model = load_checkpoint(out)
    assert model.cfg.lm.dim == 64
    codec = load_checkpoint(setup[1])
    assert torch.equal(model.vocoder.head.weight, codec.vocoder.head.weight)  # the codec stays frozen
    frontend = Frontend.load(out)
    assert frontend.mean_s and frontend.frame_s == pytest.approx(model.cfg.frame_ms / 1000)


def test_resume_continues(setup: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "lm"
    train_lm(options(setup, out, steps=3))
    first = load_checkpoint(out).lm.heads.weight.clone()
    state = torch.load(out / STATE_FILE, weights_only=False)
    assert state["step"] == 3
    result = train_lm(options(setup, out, steps=6, resume=True))
    assert result["step"] == 6
    state = torch.load(out / STATE_FILE, weights_only=False)
    assert state["step"] == 6 and state["history"]["step"][-1] == 6 and len(state["history"]["step"]) == 6
    assert not torch.equal(load_checkpoint(out).lm.heads.weight, first)


@torch.no_grad()
def test_streaming_step_equals_offline_lm() -> None:
    """The training layout (agent input = the previous step's output while speaking, PAD before)
    gives the logits the engine's frame-by-frame step computes."""
    model = SpeechModel(preset("tiny"))
    b, steps, speak_from = 2, 12, 3
    rng = np.random.default_rng(1)
    pcm = torch.from_numpy(rng.normal(0, 0.05, (b, steps * model.cfg.frame_samples)).astype(np.float32))
    text = torch.from_numpy(rng.integers(0, 256, (b, steps)))
    state = model.init_state(b)
    caller, agent, logits, speaking = [], [], [], []
    for t in range(steps):
        sp = torch.full((b,), t >= speak_from)
        state, out = model.step(state, StepInputs(pcm[:, t * 1280:(t + 1) * 1280], text[:, t],
                                                  torch.zeros(b, dtype=torch.long), sp, torch.ones(b, dtype=torch.bool)))
        caller.append(out.caller_codes), agent.append(out.agent_codes), logits.append(out.logits)
        speaking.append(t >= speak_from)
    agent_in = torch.full((b, steps, model.cfg.encoder.n_codebooks), model.lm.pad)
    for t in range(1, steps):
        if speaking[t - 1]:
            agent_in[:, t] = agent[t - 1]
    inp = LMInputs(torch.stack(caller, 1), agent_in, text, torch.zeros_like(text),
                   model.init_state(b).speaker, torch.tensor([NEUTRAL_PROSODY]).expand(b, 4))
    offline, _ = model.lm.offline(inp)
    assert torch.allclose(offline, torch.stack(logits, 1), atol=1e-4)


def test_frame_tokens_keep_every_phoneme_in_order() -> None:
    ids = [1, 10, 11, 12, 13, 2]
    onsets = [0.0, 0.01, 0.03, 0.05, 0.2, 0.3]  # three onsets inside the first 40 ms frame
    tokens = frame_tokens(ids, onsets, 0.04, 9)
    runs = [int(t) for k, t in enumerate(tokens) if k == 0 or t != tokens[k - 1]]
    assert runs == ids
    assert queue_lag_frames(onsets, 0.04).tolist() == [0, 1, 1, 2, 0, 0]
    fe = Frontend(id_map={"^": 1, "$": 2}, mean_s={"1": 0.05, "2": 0.1})
    assert fe.fold([1, 120, 10, 2], [0.0, 0.1, 0.15, 0.3]) == ([1, 120, 10, 2], [0.0, 0.1, 0.15, 0.3])
    fe.id_map["ˈ"] = 120
    assert fe.fold([1, 120, 10, 2], [0.0, 0.1, 0.15, 0.3]) == ([1, 10, 2], [0.0, 0.1, 0.3])


def test_reply_tokens_from_text() -> None:
    pytest.importorskip("piper")
    from piper.phoneme_ids import DEFAULT_PHONEME_ID_MAP

    fe = Frontend(id_map={p: ids[0] for p, ids in DEFAULT_PHONEME_ID_MAP.items()})
    tokens = fe.reply_tokens("Hello there. See you.")
    assert tokens[-1] == TEXT_END and TEXT_PAD not in tokens
    runs = [t for k, t in enumerate(tokens) if k == 0 or t != tokens[k - 1]]
    assert runs.count(fe.id_map["^"]) == 2 and fe.id_map["ˈ"] not in runs  # two sentences; stress folded
    assert 0.6 < len(tokens) * fe.frame_s < 3.0  # the default 60 ms per phoneme


def test_barge_in_rows_fall_silent() -> None:
    rng = np.random.default_rng(0)
    sil = np.full((50, 2), 7)
    corpus = CodedCorpus([rng.integers(0, 5, (40, 2))], [np.full(40, 11)], [rng.integers(0, 5, (30, 2))],
                         np.full((100, 2), 9), sil)
    sampler = ExampleSampler(corpus, frames=200, lead=3, pad=16, card=16, seed=0, mode_p=(0.0, 0.0, 1.0))
    for _ in range(5):
        caller, _, text, target, over, _, speech = sampler.row()
        onset = int(np.flatnonzero(caller[:, 0] != 9)[0])
        quiet = onset + REACT_FRAMES
        assert (target[quiet:][target[quiet:, 0] != IGNORE] == 7).all()
        assert (over[quiet:][~np.isnan(over[quiet:])] == 1).all()
        assert (text == 11).sum() == 40  # the text keeps flowing
        assert not speech[quiet:].any() and speech.any()


def test_trained_checkpoint_queues_phonemes_for_the_engine(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """A checkpoint with frontend.json loads with its frontend, and the scheduler's `say` queues
    its per-frame phoneme tokens instead of bytes."""
    from engine.batch.scheduler import BatchScheduler

    out = tmp_path / "lm"
    train_lm(options(setup, out, steps=1))
    model = load_checkpoint(out)
    assert model.frontend is not None and load_checkpoint(setup[1]).frontend is None
    model.frontend.id_map.update({"h": 10, "ə": 11, "l": 12, "o": 13, "ʊ": 14})
    sched = BatchScheduler(model, slots=1)
    sched.join(0)
    sched.say(0, "hello")
    queued = list(sched.slots[0].text)
    assert queued == model.frontend.reply_tokens("hello") and queued[-1] == TEXT_END
    assert set(queued[:-1]) <= {1, 2, 10, 11, 12, 13, 14}


def test_init_lm_takes_the_lm_and_keeps_the_codec(setup: tuple[Path, Path], tmp_path: Path) -> None:
    from engine.train.lm import build_model

    donor = tmp_path / "donor"
    train_lm(options(setup, donor, steps=2))
    opts = options(setup, tmp_path / "warm", steps=1)
    opts.init_lm = donor
    model, resumed = build_model(opts)
    assert not resumed
    assert torch.equal(model.lm.heads.weight, load_checkpoint(donor).lm.heads.weight)
    assert torch.equal(model.encoder.inp.conv.weight, load_checkpoint(setup[1]).encoder.inp.conv.weight)


def test_export_half_loads_back(setup: tuple[Path, Path], tmp_path: Path) -> None:
    from engine.train.lm import export_half

    train_lm(options(setup, tmp_path / "lm", steps=1))
    half = export_half(tmp_path / "lm", tmp_path / "half")
    full, back = load_checkpoint(tmp_path / "lm"), load_checkpoint(half)
    assert back.frontend is not None and back.frontend.mean_s == full.frontend.mean_s
    w = full.lm.heads.weight.detach()
    assert torch.allclose(back.lm.heads.weight, w, atol=1e-3 * float(w.abs().max())) and back.lm.heads.weight.dtype == torch.float32
    assert (half / "model.safetensors").stat().st_size < 0.6 * (tmp_path / "lm" / "model.safetensors").stat().st_size


def test_bench_dtw_distance_tells_own_sentence_from_another() -> None:
    from gateway.bench.model_lm import dtw_distance

    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 8))
    stretched = np.repeat(a, 2, axis=0)[::3]  # the same 'sentence' at another speed
    assert dtw_distance(a, a) == 0.0
    assert dtw_distance(a, stretched) < 0.5 * dtw_distance(a, rng.normal(size=(30, 8)))


def test_bench_speaks_every_row_for_its_own_length(setup: tuple[Path, Path], tmp_path: Path) -> None:
    from engine.model.speak import TAIL_FRAMES, speak

    out = tmp_path / "lm"
    train_lm(options(setup, out, steps=1))
    model = load_checkpoint(out)
    model.frontend.id_map.update({"h": 10, "a": 11})
    spoken = speak(model, model.frontend, ["ha", "ha ha ha ha"])
    assert spoken.lengths[1] > spoken.lengths[0]
    assert spoken.lengths[0] == len(model.frontend.reply_tokens("ha")) + model.frontend.lead_frames + TAIL_FRAMES
    assert spoken.pcm.shape == (2, max(spoken.lengths) * model.cfg.frame_samples)
    assert spoken.codes.shape[:2] == (2, max(spoken.lengths)) and np.isfinite(spoken.pcm).all()
