"""An independent SIP phone (Debian's baresip) calls the gateway: it plays speech and
records what it hears; the greeting and the echo of its own speech must come back."""

from __future__ import annotations

from typing import Callable

import pytest

from engine.agents.prompts import chime
from tests.conftest import DATA, need
from tests.support.audio import piecewise_match, read_wav, xcorr
from tests.support.baresip import Baresip
from tests.support.gateway import RAW_MEDIA, Gateway, wait_until

SPEECH = DATA / "hours_joe_16k.wav"


@pytest.fixture
def gateway(gateway_factory: Callable[..., Gateway]) -> Gateway:
    return gateway_factory(media=RAW_MEDIA)


@pytest.mark.parametrize("codec", ["G722", "PCMU"])
def test_baresip_call_hears_greeting_and_its_own_echo(gateway: Gateway, codec: str) -> None:
    need("baresip")
    with Baresip(wav=SPEECH, seconds=9.0, codecs=[codec]) as phone:
        phone.dial(gateway.uri())
        assert phone.wait_event("CALL_ESTABLISHED", timeout=10), phone.output()
        call_id = str(gateway.only_call()["call_id"])
        gateway.wait_turn("caller turn ended", call_id, timeout=15)
        gateway.wait_turn("utterance #2 played", call_id, timeout=15)
        assert phone.wait_event("CALL_CLOSED", timeout=15), phone.output()  # baresip's BYE
        heard, _ = phone.received_audio()
    gateway.wait_log("call ended", call_id=call_id)
    wait_until(lambda: gateway.calls() == [], 5, "/calls empty")
    floor = 0.8 if codec == "G722" else 0.6
    greeting = xcorr(chime(), heard)
    assert abs(greeting.peak) > floor, f"greeting: {greeting.peak:.2f}"  # tones: sign is phase
    sent, _ = read_wav(SPEECH)
    nz = (sent != 0).nonzero()[0]
    voiced = sent[nz[0] : nz[-1]]
    # Piece by piece: either jitter buffer may shift the audio by a frame mid-utterance.
    echo = piecewise_match(voiced, heard[greeting.lag + chime().size :])
    assert echo.found(floor - 0.2) >= 0.9, f"echo of baresip's speech: {echo.describe()}"
    recorded, _ = read_wav(gateway.recording(call_id, "caller"))
    engine_heard = piecewise_match(voiced, recorded)
    assert len(engine_heard.peaks) >= 3 and engine_heard.found(floor) >= 0.9, engine_heard.describe()
