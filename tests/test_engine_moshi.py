"""Kyutai's Moshi/Mimi through engine/model/moshi_adapter.py, with a tiny random-init model (CPU):
the wiring (16 kHz frames → Mimi codes → Moshi tokens → 16 kHz frames), batching over slots
(a batch equals single runs; freeze and reset touch one row only) and local weights directories."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

pytest.importorskip("moshi", reason="the optional moshi package is not installed (engine/model/README.md)")
from moshi.utils.compile import no_compile  # noqa: E402

from engine.model.moshi_adapter import (  # noqa: E402
    MoshiBatch,
    MoshiError,
    MoshiModels,
    MoshiOutput,
    load_spec,
    random_models,
    save_models,
    tiny_configs,
)
from engine import wire  # noqa: E402
from engine.session import EventKind, SessionEvent, SessionInfo  # noqa: E402
from tests.conftest import DATA, ROOT  # noqa: E402
from tests.support.audio import read_wav  # noqa: E402
from tests.support.gateway import wait_until  # noqa: E402

FRAME_BYTES = 640
TICKS = 10
SPEECH = 8000  # the recordings start with 0.5 s of silence


@pytest.fixture(scope="module")
def models() -> MoshiModels:
    torch.set_num_threads(1)
    return load_spec("moshi:tiny")


@dataclass
class Caller:
    wav: str
    offset: int = 0  # samples skipped at the start of the file
    join_at: int = 0  # tick
    cursor: int = 0  # 20 ms frames pushed so far
    out: list[MoshiOutput] = field(default_factory=list)
    out_ticks: list[int] = field(default_factory=list)  # the tick each output came in

    def audio(self) -> bytes:
        pcm, _ = read_wav(DATA / self.wav)
        return pcm[self.offset :].tobytes()


def callers() -> list[Caller]:
    return [Caller("hours_joe_16k.wav", offset=SPEECH), Caller("person_f3_16k.wav", offset=SPEECH, join_at=2)]


def drive(batch: MoshiBatch, sessions: dict[int, Caller], ticks: int,
          actions: dict[int, list[tuple[str, int]]] | None = None) -> None:
    """Each tick every joined, unfrozen slot pushes four 20 ms frames, then the batch steps."""
    audio = {slot: c.audio() for slot, c in sessions.items()}
    for tick in range(ticks):
        for slot, c in sessions.items():
            if c.join_at == tick:
                batch.join(slot)
        for what, slot in (actions or {}).get(tick, []):
            if what == "freeze":
                batch.freeze(slot, True)
            elif what == "thaw":
                batch.freeze(slot, False)
            elif what == "reset":
                batch.reset(slot)
        for slot, c in sessions.items():
            if tick < c.join_at or batch.slots[slot].frozen:
                continue
            for _ in range(4):
                batch.push(slot, audio[slot][c.cursor * FRAME_BYTES : (c.cursor + 1) * FRAME_BYTES])
                c.cursor += 1
        batch.tick()
        for slot, c in sessions.items():
            got = batch.take(slot)
            c.out += got
            c.out_ticks += [tick] * len(got)


def run(models: MoshiModels, sessions: dict[int, Caller], slots: int, ticks: int = TICKS,
        actions: dict[int, list[tuple[str, int]]] | None = None) -> None:
    batch = MoshiBatch(models, slots, greedy=True)
    try:
        drive(batch, sessions, ticks, actions)
    finally:
        batch.close()


def pcm(outs: list[MoshiOutput]) -> np.ndarray:
    return np.frombuffer(b"".join(f for o in outs for f in o.frames), np.int16).astype(np.int32)


def same(a: list[MoshiOutput], b: list[MoshiOutput]) -> None:
    assert len(a) == len(b) and a, (len(a), len(b))
    assert [o.caller_codes for o in a] == [o.caller_codes for o in b]
    assert [o.agent_codes for o in a] == [o.agent_codes for o in b]
    assert [o.text_token for o in a] == [o.text_token for o in b]
    assert [len(o.frames) for o in a] == [len(o.frames) for o in b]
    assert np.abs(pcm(a) - pcm(b)).max(initial=0) <= 4


def test_frames_in_become_codes_tokens_and_frames_out(models: MoshiModels) -> None:
    caller = Caller("hours_joe_16k.wav", offset=SPEECH)
    run(models, {0: caller}, slots=1)
    out = caller.out
    assert TICKS - 1 <= len(out) <= TICKS, "one step per 80 ms (the 16 → 24 kHz stream may hold one back)"
    assert [o.step for o in out] == list(range(1, len(out) + 1))
    card, text_card = models.lm.card, models.lm.text_card
    for o in out:
        assert len(o.caller_codes) == models.mimi.num_codebooks == 8
        assert all(0 <= c < card for c in o.caller_codes)
        assert all(len(f) == FRAME_BYTES for f in o.frames)
    assert len({tuple(o.caller_codes) for o in out}) >= len(out) - 2, "Mimi's codes should follow the speech"
    assert out[0].agent_codes is None and out[0].text_token < 0, "Moshi's delayed streams start one step late"
    assert not pcm(out[:1]).any(), "no agent audio before Moshi has generated codes"
    for o in out[1:]:
        assert o.agent_codes is not None and len(o.agent_codes) == models.lm.dep_q
        assert all(0 <= c < card for c in o.agent_codes) and 0 <= o.text_token < text_card
    frames = sum(len(o.frames) for o in out)
    assert 4 * len(out) - 2 <= frames <= 4 * len(out), "four 20 ms frames per step, less the 24 → 16 kHz lag"
    assert np.abs(pcm(out[2:])).max() > 300, "Moshi's decoded audio reaches the 16 kHz frames"

    # the frames are Mimi's decoding of exactly the generated codes (its decoder starts at the first
    # generated frame), after the one silent frame, resampled to 16 kHz
    codes = torch.tensor([o.agent_codes for o in out[1:]]).T.unsqueeze(0)
    with no_compile(), torch.no_grad():
        decoded = models.mimi.decode(codes)[0, 0].numpy()
    down = soxr.ResampleStream(24000, 16000, 1, dtype="float32", quality="HQ")
    ref = down.resample_chunk(np.concatenate([np.zeros(1920, np.float32), decoded]))
    ref16 = (np.clip(ref, -1, 1) * 32767).astype(np.int16).astype(np.int32)
    got = pcm(out)
    n = min(got.size, ref16.size)
    assert n >= got.size - 640, (got.size, ref16.size)
    assert np.abs(got[:n] - ref16[:n]).max() <= 4


def test_a_batch_equals_single_runs_slot_by_slot(models: MoshiModels) -> None:
    batched = dict(zip((0, 2), callers()))  # slot 1 stays empty; slot 2 joins two ticks late
    run(models, batched, slots=3)
    for slot, alone in zip((0, 2), callers()):
        alone.join_at = 0
        run(models, {0: alone}, slots=1, ticks=TICKS - batched[slot].join_at)
        same(batched[slot].out, alone.out)
    assert batched[0].out[-1].caller_codes != batched[2].out[-1].caller_codes, "the two calls must differ"


def test_freezing_and_resetting_one_slot_leave_the_other_unchanged(models: MoshiModels) -> None:
    base = dict(enumerate(callers()))
    for c in base.values():
        c.join_at = 0
    run(models, base, slots=2)
    varied = dict(enumerate(callers()))
    for c in varied.values():
        c.join_at = 0
    run(models, varied, slots=2, actions={3: [("freeze", 0)], 6: [("thaw", 0), ("reset", 1)]})

    # slot 0 was held for 3 ticks: it continues exactly where it was, as if those ticks never happened
    held = varied[0].out
    assert len(held) == len(base[0].out) - 3
    same(held, base[0].out[: len(held)])
    # slot 1 ran next to the hold untouched, then its reset made it a fresh session on the audio from then on
    before = sum(t < 6 for t in varied[1].out_ticks)
    same(varied[1].out[:before], base[1].out[:before])
    restarted = Caller("person_f3_16k.wav", offset=SPEECH + 6 * 4 * 320)
    run(models, {0: restarted}, slots=1, ticks=TICKS - 6)
    same(varied[1].out[before:], restarted.out)
    assert varied[1].out[before].agent_codes is None, "after a reset Moshi's delayed streams start over"


def test_weights_load_from_a_local_directory_with_clear_errors(tmp_path: Path) -> None:
    lm_kwargs, mimi_config = tiny_configs()
    made = random_models(lm_kwargs, mimi_config, seed=3)
    save_models(made, lm_kwargs, mimi_config, tmp_path / "w")
    loaded = load_spec(f"moshi:{tmp_path / 'w'}")
    a, b = Caller("book_joe_16k.wav", offset=SPEECH), Caller("book_joe_16k.wav", offset=SPEECH)
    run(made, {0: a}, slots=1, ticks=5)
    run(loaded, {0: b}, slots=1, ticks=5)
    same(a.out, b.out)

    with pytest.raises(MoshiError, match="no such Moshi weights directory"):
        load_spec(f"moshi:{tmp_path / 'nowhere'}")
    (tmp_path / "w" / "mimi.safetensors").rename(tmp_path / "w" / "moved.safetensors")
    with pytest.raises(MoshiError, match=r"mimi\.safetensors: missing"):
        load_spec(f"moshi:{tmp_path / 'w'}")
    (tmp_path / "w" / "moved.safetensors").rename(tmp_path / "w" / "mimi.safetensors")
    lm_kwargs["dim"] = 48
    save_models(random_models(lm_kwargs, mimi_config), lm_kwargs, mimi_config, tmp_path / "other")
    (tmp_path / "other" / "model.safetensors").replace(tmp_path / "w" / "model.safetensors")
    with pytest.raises(MoshiError, match=r"model\.safetensors: does not fit the Moshi config"):
        load_spec(f"moshi:{tmp_path / 'w'}")
    (tmp_path / "w" / "config.json").write_text("{not json")
    with pytest.raises(MoshiError, match=r"config\.json: not readable JSON"):
        load_spec(f"moshi:{tmp_path / 'w'}")


class EngineClient:
    """The worker's side of the engine socket, driven by hand: one call on a 20 ms caller clock."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.connect(str(path))
        self.audio: list[bytes] = []

    def open(self, agent: dict[str, object]) -> tuple[int, str]:
        info = SessionInfo(f"moshi-{agent['agent']}", "1000", "tester", agent=agent, transport="test")
        self.sock.send(wire.encode_open(1, info))
        while True:
            msg = self.receive(10)
            if msg[0] is wire.MsgType.OPENED:
                return msg[1], str(msg[3])  # type: ignore[return-value]

    def receive(self, timeout: float) -> wire.Decoded:
        self.sock.settimeout(timeout)
        return wire.decode(self.sock.recv(wire.MAX_MESSAGE))

    def frame(self, slot: int, t: float, pcm: bytes) -> None:
        """Send one caller frame, then take what the engine sent until the next frame is due (20 ms)."""
        self.sock.send(wire.encode_frame(slot, t, pcm))
        due = time.monotonic() + 0.02
        while (left := due - time.monotonic()) > 0 and select.select([self.sock], [], [], left)[0]:
            msg = wire.decode(self.sock.recv(wire.MAX_MESSAGE))
            if msg[0] is wire.MsgType.AUDIO:
                self.audio.append(msg[2].pcm)  # type: ignore[union-attr]

    def event(self, slot: int, kind: EventKind, t: float) -> None:
        self.sock.send(wire.encode_event(slot, SessionEvent(kind, t)))


def test_the_engine_serves_moshi_agents_selected_by_the_dialplan(tmp_path: Path) -> None:
    path = tmp_path / "engine.sock"
    engine = subprocess.Popen([sys.executable, "-m", "engine.server", "--socket", str(path), "--slots", "2",
                               "--model", "moshi:tiny", "--log-format", "json"], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True)
    try:
        wait_until(path.exists, 60, "the engine's socket")
        client = EngineClient(path)
        slot, reason = client.open({"agent": "model", "greeting": ""})
        assert slot == wire.NO_SLOT and "the model agent needs" in reason, "a Moshi engine has no in-house model"
        slot, reason = client.open({"agent": "moshi", "greeting": "", "end_of_turn_ms": 200})
        assert slot != wire.NO_SLOT, reason

        speech, _ = read_wav(DATA / "hours_joe_16k.wav")
        frames = [speech[i : i + 320].tobytes() for i in range(0, speech.size - 319, 320)]
        t0 = time.monotonic()
        client.event(slot, EventKind.STARTED, t0)
        client.event(slot, EventKind.SPEECH_START, t0)
        for i, pcm in enumerate(frames):  # the caller speaks for 2.9 s ...
            client.frame(slot, t0 + 0.02 * i, pcm)
        client.event(slot, EventKind.SPEECH_STOP, t0 + 0.02 * len(frames))
        silence, i = bytes(FRAME_BYTES), len(frames)
        deadline = time.monotonic() + 20
        while len(client.audio) < 25 and time.monotonic() < deadline:  # ... then listens to Moshi's reply
            client.frame(slot, t0 + 0.02 * i, silence)
            i += 1
        assert len(client.audio) >= 25, "no reply from the Moshi agent"
        assert all(len(f) == FRAME_BYTES for f in client.audio)
        assert np.abs(np.frombuffer(b"".join(client.audio), np.int16)).max() > 300
        client.event(slot, EventKind.HANGUP, time.monotonic())
        client.sock.close()
    finally:
        engine.terminate()
        _, err = engine.communicate(timeout=30)
    assert engine.returncode == 0, err[-2000:]
    loaded = next(json.loads(line) for line in err.splitlines() if '"model loaded"' in line)
    assert loaded["config"] == "moshi" and loaded["frame_ms"] == 80.0

    bad = subprocess.run([sys.executable, "-m", "engine.server", "--socket", str(tmp_path / "bad.sock"),
                          "--model", f"moshi:{tmp_path / 'no-weights'}"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "no such Moshi weights directory" in bad.stderr, bad.stderr[-2000:]


def test_the_config_check_accepts_moshi_and_names_a_missing_weights_directory(tmp_path: Path) -> None:
    (tmp_path / "plan.toml").write_text('[[entry]]\nname = "moshi"\nagent = "moshi"\ngreeting = ""\n')
    for model, code in (("moshi:tiny", 0), (f"moshi:{tmp_path}", 0), (f"moshi:{tmp_path / 'none'}", 2)):
        cfg = tmp_path / "talkover.toml"
        cfg.write_text(f'dialplan = "plan.toml"\n[engine]\nmodel = "{model}"\n')
        out = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "--config", str(cfg)],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert out.returncode == code, out.stdout + out.stderr
        if code:
            assert "talkover.toml:3: engine.model:" in out.stderr and "moshi:<weights directory>" in out.stderr
