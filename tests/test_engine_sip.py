"""One SIP call end to end through the gateway to the tiny model, with a barge-in that pauses then commits."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from tests.conftest import DATA
from tests.support.audio import active_spans, read_wav
from tests.support.gateway import Gateway, wait_until
from tests.support.phone_client import Phone

MODEL_ENTRY = {"name": "model", "numbers": ["*"], "agent": "model", "greeting": "chime", "barge_in_min_ms": 300}


def test_a_call_talks_to_the_tiny_model_and_barges_in_on_its_reply(
    gateway_factory: Callable[..., Gateway], tmp_path: Path
) -> None:
    gw = gateway_factory(engine={"model": "tiny"}, entries=[dict(MODEL_ENTRY)])
    loaded = gw.wait_log("model loaded")
    assert loaded["config"] == "tiny" and loaded["frame_ms"] == 80.0
    with Phone() as phone:
        phone.call(gw.uri(), codecs=["G722"])
        phone.record_start()
        phone.wait_state("CONFIRMED")
        call_id = str(gw.only_call()["call_id"])
        gw.wait_turn("utterance #1 played", call_id)  # the greeting prompt
        phone.play(DATA / "hours_joe_16k.wav")
        gw.wait_turn("caller turn ended", call_id, timeout=20)
        phone.play(DATA / "long_joe_16k.wav")  # its speech starts 0.5 s in: over the model's reply
        gw.wait_turn("speak reply #2 (streaming)", call_id, timeout=10)
        gw.wait_turn("barge-in commit", call_id, timeout=10)
        cut = gw.wait_turn("cut off: caller heard", call_id, timeout=10)[0]
        phone.record_stop(tmp_path / "heard.wav")
        phone.hangup()
    gw.wait_log("session closed", call_id=call_id)
    turns = gw.turns(call_id)
    order = ["caller turn ended", "speak reply #2", "barge-in pause", "barge-in commit", "cut off"]
    positions = [next(i for i, w in enumerate(turns) if w.startswith(p)) for p in order]
    assert positions == sorted(positions), turns
    heard_ms = int(re.search(r"heard (\d+) ms of #2", cut).group(1))  # type: ignore[union-attr]
    assert 0 < heard_ms < 6000, cut

    # the caller heard the model's reply (not silence) between the greeting and the barge-in
    heard, rate = read_wav(tmp_path / "heard.wav")
    spans = active_spans(heard, rate, threshold_dbfs=-45)
    assert len(spans) >= 2, f"greeting and reply expected in what the caller heard: {spans}"
    reply = max(end - start for start, end in spans[1:])
    assert reply >= 0.1, f"reply audio too short: {reply:.2f} s"
    assert _ticks(gw) > 0


def _ticks(gw: Gateway) -> float:
    return wait_until(lambda: gw.metric("talkover_engine_tick_seconds_count"), 5, "tick metric")  # type: ignore[no-any-return]


def test_a_model_that_is_not_there_fails_the_config_check_naming_the_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import ROOT

    cfg = tmp_path / "talkover.toml"
    cfg.write_text('[engine]\nslots = 4\nmodel = "/no/such/checkpoint"\n')
    out = subprocess.run([sys.executable, "-m", "gateway.cli", "check", "--config", str(cfg)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 2
    assert "talkover.toml:3: engine.model:" in out.stderr and "checkpoint directory" in out.stderr, out.stderr
