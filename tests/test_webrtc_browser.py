"""The softphone page in a real headless Chromium (Debian's, driven by Selenium): it calls the
agent, hears the greeting chime (recognised by frequency in the page's own WebAudio analysis),
shows the agent's state live, holds and resumes by renegotiation, sends DTMF, hangs up; a
refused microphone gets a clear message."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest

from tests.conftest import ARTIFACTS, DATA
from tests.support.audio import read_wav, write_wav
from tests.support.browser import Browser
from tests.support.gateway import Gateway, wait_until

SPEECH = DATA / "hours_joe_16k.wav"


@pytest.fixture
def web_gw(gateway_factory: Callable[..., Gateway]) -> Gateway:
    entries = [{"name": "test", "numbers": ["*"], "agent": "echo", "greeting": "chime"}]
    gw = gateway_factory(webrtc={"enabled": True, "consent_interval_s": 1.0, "consent_failures": 3}, entries=entries)
    gw.wait_log("media chain warm", timeout=30)
    return gw


@pytest.fixture
def mic_wav(tmp_path: Path) -> Path:
    """The fake microphone (Chromium loops it): quiet while the greeting plays, then a turn."""
    speech, rate = read_wav(SPEECH)
    path = tmp_path / "mic.wav"
    write_wav(path, np.concatenate([np.zeros(3 * rate, np.int16), speech, np.zeros(3 * rate, np.int16)]), rate)
    return path


@pytest.fixture
def browser(tmp_path: Path, mic_wav: Path) -> Iterator[Browser]:
    b = Browser(tmp_path, mic_wav)
    yield b
    b.close()


def test_softphone_calls_the_agent_holds_dials_and_hangs_up(web_gw: Gateway, browser: Browser) -> None:
    browser.open(f"http://127.0.0.1:{web_gw.http_port}/?entry=test")
    assert browser.text("call-state") == "idle" and browser.text("entry") == "test"
    browser.click("call")
    browser.wait(lambda: browser.js("window.softphone.chimeHeard"), 15, "the greeting chime heard in the page")
    sp = browser.js("window.softphone")
    click_to_audio_ms = sp["firstAudioAt"] - sp["clickAt"]
    assert [round(float(hz)) for hz in sorted(sp["notes"], key=float)] == [523, 659, 784]
    call_id = sp["callId"]
    assert call_id.startswith("webrtc-") and browser.text("call-state") == "connected"
    browser.wait(lambda: "speaking" in browser.js("window.softphone.states"), 5, "state display: speaking")
    web_gw.wait_turn("utterance #1 played", call_id)
    browser.wait(lambda: browser.text("agent-state") == "listening", 5, "state display: listening")
    call = web_gw.only_call()
    assert call["transport"] == "webrtc" and call["codec"] == "opus/48000"
    web_gw.wait_turn("caller turn ended", call_id, timeout=20)  # the fake microphone's speech
    browser.wait(lambda: browser.js("window.softphone.agentState == 'speaking' && window.softphone.agentDbfs > -40"),
                 10, "the echo heard in the page")
    browser.screenshot(ARTIFACTS / "webrtc_softphone.png")
    web_gw.wait_turn("utterance #2 played", call_id, timeout=20)

    browser.click("hold")
    browser.wait(lambda: browser.text("agent-state") == "on hold", 10, "state display: on hold")
    assert browser.text("hold") == "Resume"
    web_gw.wait_turn("hold", call_id)
    wait_until(lambda: web_gw.calls()[0]["on_hold"], 5, "on_hold in /calls")
    browser.screenshot(ARTIFACTS / "webrtc_softphone_hold.png")
    browser.click("hold")
    web_gw.wait_turn("resume from hold", call_id)
    browser.wait(lambda: browser.text("agent-state") in ("listening", "speaking"), 10, "state display after resume")

    browser.click("mute")
    assert browser.text("mute") == "Unmute"
    for digit in "5#":
        browser.driver.find_element("css selector", f'.keypad button[data-digit="{digit}"]').click()
    web_gw.wait_turn("dtmf", call_id, count=2)
    assert [t.split()[1] for t in web_gw.turns(call_id) if t.startswith("dtmf")] == ["5", "#"]

    browser.click("hangup")
    assert browser.text("call-state") == "ended"
    web_gw.wait_log("session closed", call_id=call_id)
    wait_until(lambda: not web_gw.calls(), 10, "no calls left")
    severe = [m for m in browser.console() if m.startswith("SEVERE")]
    assert not severe, severe
    print(f"\nCall click → first agent audio in the page: {click_to_audio_ms:.0f} ms; steps (ms): {sp['marks']}")
    assert click_to_audio_ms < 3000


def test_refused_microphone_shows_a_clear_message(web_gw: Gateway, tmp_path: Path) -> None:
    denied = Browser(tmp_path, None, mic="deny")
    try:
        denied.open(f"http://127.0.0.1:{web_gw.http_port}/")
        denied.click("call")
        denied.wait(lambda: denied.js("window.softphone.errors.length"), 10, "an error message")
        assert "Microphone access was refused" in denied.text("error")
        assert denied.text("call-state") == "idle"
        assert not web_gw.calls()
    finally:
        denied.close()


def test_gateway_refusal_is_shown_not_swallowed(gateway_factory: Callable[..., Gateway], browser: Browser) -> None:
    gw = gateway_factory(webrtc={"enabled": True, "max_calls": 1})
    browser.open(f"http://127.0.0.1:{gw.http_port}/call/no-such-agent")
    assert browser.text("entry") == "no-such-agent"
    browser.click("call")
    browser.wait(lambda: browser.js("window.softphone.errors.length"), 10, "an error message")
    assert "does not exist" in browser.text("error") and "no-such-agent" in browser.text("error")
    assert browser.text("call-state") == "failed"


def test_a_call_ended_by_the_gateway_is_explained(web_gw: Gateway, browser: Browser) -> None:
    browser.open(f"http://127.0.0.1:{web_gw.http_port}/")
    browser.click("call")
    browser.wait(lambda: browser.text("call-state") == "connected", 10, "connected")
    os.kill(web_gw.engine_pid(), signal.SIGKILL)
    browser.wait(lambda: browser.text("call-state") == "ended", 10, "the page sees the call end")
    assert "The call was ended: engine lost" in browser.text("error")
    assert browser.text("agent-state") == "—" and not browser.driver.find_element("id", "mute").is_enabled()
