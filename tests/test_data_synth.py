"""`talkover data synth`: the corpus plan, its voice split, the telephone line, and rendering."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from engine.data import synth, telephone, voices
from gateway.config import REPO_ROOT


def test_the_plan_is_reproducible_and_split_by_voice() -> None:
    a, b = synth.plan(seed=3), synth.plan(seed=3)
    assert [(i.id, i.voice, i.line) for i in a] == [(i.id, i.voice, i.line) for i in b]
    assert [i.line for i in synth.plan(seed=4)] != [i.line for i in a]
    train = {i.voice.name for i in a if i.voice.split == "train"}
    heldout = {i.voice.name for i in a if i.voice.split == "heldout"}
    assert train and heldout and not train & heldout
    assert all(f"/{i.voice.split}/" in i.id for i in a if i.kind == "caller")
    # every caller line of every voice comes clean and through a telephone line
    callers = [i for i in a if i.kind == "caller"]
    assert sum(i.line is None for i in callers) == sum(i.line is not None for i in callers)


def test_more_takes_jitter_the_voice() -> None:
    items = synth.plan(seed=0, size=2, splits=("train",), agent=False, telephone_band=False)
    first = {(i.voice.name, i.text): i.voice for i in items if i.take == 0}
    second = [i for i in items if i.take == 1]
    assert len(second) == len(first)
    assert sum(first[(i.voice.name, i.text)] != i.voice for i in second) > len(second) * 0.9


def test_mu_law_round_trip_is_g711() -> None:
    x = np.array([0, 1, -1, 100, -100, 1000, -1000, 8000, -8000, 32767, -32768], np.int16)
    codes = telephone.ulaw_encode(x)
    assert codes[0] == 0xFF and codes[-2] == 0x80 and codes[-1] == 0x00  # G.711: zero, +max, -max
    y = telephone.ulaw_decode(codes)
    err = np.abs(y.astype(int) - x.astype(int))
    assert np.all(err <= np.maximum(8, np.abs(x.astype(int)) // 16))  # about 4 bits of mantissa


def test_the_telephone_line_removes_the_upper_band_and_adds_noise() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(16000) * 3000).astype(np.int16)
    y = telephone.telephone(x, telephone.LineParams(snr_db=25.0), rng)
    assert y.size == x.size

    def band_db(s: np.ndarray, lo: float, hi: float) -> float:
        spec = np.abs(np.fft.rfft(s.astype(float))) ** 2
        f = np.fft.rfftfreq(s.size, 1 / 16000)
        return 10 * np.log10(spec[(f >= lo) & (f < hi)].sum())

    assert band_db(x, 4500, 8000) - band_db(y, 4500, 8000) > 30
    assert abs(band_db(x, 500, 3000) - band_db(y, 500, 3000)) < 3
    silence = telephone.telephone(np.zeros(8000, np.int16), telephone.LineParams(snr_db=25.0), rng)
    assert not np.any(np.isnan(silence.astype(float)))


def test_voices_speak_16k_audio() -> None:
    for name in ("espeak-us-f3", "piper-joe-fast"):
        audio = voices.say(voices.BY_NAME[name], "What are your opening hours?")
        assert 0.8 < audio.size / voices.RATE < 4.0, name
        assert np.abs(audio).max() > 3000, name


def test_the_command_writes_wavs_and_a_manifest(tmp_path: Path) -> None:
    # a small plan through the real command line: patch the plan to a few lines of two voices
    code = (
        "import sys; from engine.data import synth; full = synth.plan\n"
        "synth.plan = lambda *a, **k: [i for i in full(*a, **k) if i.kind == 'agent'][:2] + "
        "[i for i in full(*a, **k) if i.voice.name in ('espeak-us-m3', 'espeak-us-f3')][:6]\n"
        "from gateway.cli import main; sys.exit(main(['data', 'synth', sys.argv[1], '--seed', '1']))\n"
    )
    out = tmp_path / "corpus"
    proc = subprocess.run([sys.executable, "-c", code, str(out)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "synth 8/8" in proc.stderr  # the progress bar
    recs = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert len(recs) == 8
    for rec in recs:
        audio = voices.read_wav(out / rec["path"])
        assert abs(audio.size / voices.RATE - rec["duration_s"]) < 0.01
    assert {r["channel"] for r in recs if r["kind"] == "caller"} == {"clean", "telephone"}
