"""End to end over SIP: the caller's phone echoes the gateway's own audio back (delay +
attenuation, like a line hybrid), and the media chain must not take that echo for the caller
while it still hears the caller's real speech, over the agent too (barge-in)."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from tests.conftest import DATA
from tests.support.gateway import Gateway, wait_until
from tests.support.phone_client import Phone

CALLER = DATA / "hours_f3_16k.wav"  # a second voice: the agent (echo agent) replays the caller
LONG_CALLER = DATA / "person_f3_16k.wav"
ECHO_DELAY_MS, ECHO_GAIN_DB = 120.0, -10.0  # a line hybrid: ERL 10 dB (G.168 assumes >= 6)


def fresh_call(gw: Gateway) -> dict[str, Any]:
    """The call's /calls entry from a status report made after this moment (they come once a second)."""
    then = float(gw.calls()[0]["age_s"])
    return wait_until(lambda: next((c for c in gw.calls() if c["age_s"] >= then + 1.05), None), 5, "a fresh /calls")


def speech_starts(gw: Gateway) -> int:
    return int(fresh_call(gw)["speech_starts"])


def test_agent_echo_starts_no_speech_but_the_caller_is_heard_and_barges_in(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory()  # the default chain: AEC3 + NS + Silero
    with Phone() as phone:
        phone.call(gw.uri(), codecs=["G722"])
        phone.wait_state("CONFIRMED")
        call_id = str(gw.only_call()["call_id"])
        phone.echo(ECHO_DELAY_MS, ECHO_GAIN_DB)
        gw.wait_turn("utterance #1 played", call_id)  # the greeting, echoed back
        assert speech_starts(gw) == 0
        phone.play(CALLER)
        gw.wait_turn("caller turn ended", call_id, timeout=15)
        assert speech_starts(gw) == 1, gw.turns(call_id)
        # The echo agent says the caller's words back: speech that comes back as echo.
        gw.wait_turn("utterance #2 played", call_id, timeout=20)
        assert speech_starts(gw) == 1, f"the agent's echo was taken for the caller: {gw.turns(call_id)}"
        phone.play(LONG_CALLER)
        gw.wait_turn("caller turn ended", call_id, timeout=15, count=2)
        gw.wait_turn("speak reply #3", call_id, timeout=10)
        phone.play(CALLER)  # over the agent's reply and its echo
        gw.wait_turn("barge-in pause", call_id, timeout=10)
        call = fresh_call(gw)
        phone.hangup()
    turns = gw.turns(call_id)
    assert turns.count("barge-in pause") == 1, turns
    assert call["barge_in_pauses"] == 1 and call["speech_starts"] == 3
    assert gw.metric("talkover_media_stage_frames_total", 'stage="aec"') > 0
    assert 0 < call["dsp_us"]["inbound"] < 5000, call["dsp_us"]  # µs per 20 ms frame on the clock thread
    # Silero ran in the worker's per-tick batch, always at the end of the tick that brought the frame
    batch = gw.health()[1]["workers"][0]["vad_batch"]
    assert batch["runs"] > 100 and batch["late_runs"] == 0, batch


@pytest.mark.parametrize("media", [{"aec": False, "noise": "off"}])
def test_without_the_canceller_the_same_echo_is_taken_for_the_caller(
    gateway_factory: Callable[..., Gateway], media: dict[str, Any]
) -> None:
    """The control: the scenario above is hard enough that the chain without AEC fails it."""
    gw = gateway_factory(media=media)
    with Phone() as phone:
        phone.call(gw.uri(), codecs=["G722"])
        phone.wait_state("CONFIRMED")
        call_id = str(gw.only_call()["call_id"])
        phone.echo(ECHO_DELAY_MS, ECHO_GAIN_DB)
        gw.wait_turn("utterance #1 played", call_id)
        phone.play(CALLER)
        gw.wait_turn("caller turn ended", call_id, timeout=15)
        wait_until(lambda: gw.calls()[0]["speech_starts"] >= 2, 20, "the agent's echo taken for caller speech")
        phone.hangup()
    assert "barge-in pause" in gw.turns(call_id)
