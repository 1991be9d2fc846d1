"""The receptionist's replies in talkover's own voice (`voice = "model"`): the shipped unit LM +
vocoder speaks the script's texts, and piper's prompts stand in until it has, or if it cannot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.agents.receptionist import model_voice, prompts
from engine.agents.receptionist.agent import ReceptionistAgent
from engine.agents.receptionist.asr import make_decoder, transcribe
from gateway.bench.model import word_errors

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def voice() -> model_voice.ModelVoice:
    v = model_voice.ModelVoice().start()
    assert v.wait(180), "the replies were not rendered in time"
    assert not v.error, v.error
    return v


def test_every_reply_is_rendered_in_the_model_voice(voice: model_voice.ModelVoice) -> None:
    for name in prompts.prompt_texts():
        audio = voice.get(name)
        assert audio is not None and audio.dtype == np.int16, name
        piper = prompts.load(name)
        assert 0.5 < audio.size / piper.size < 2.0, (name, audio.size, piper.size)  # about as long as piper says it
        rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
        assert rms > 300, (name, rms)  # speech, not silence (about -40 dBFS or louder)


def test_the_hours_reply_is_heard_closer_to_its_own_text_than_to_any_other(voice: model_voice.ModelVoice) -> None:
    texts = prompts.prompt_texts()
    heard = transcribe(make_decoder("freeform"), voice.get("hours").tobytes()).text  # type: ignore[union-attr]
    rate = {name: word_errors(text, heard) for name, text in texts.items()}
    best = min(rate, key=lambda n: rate[n][0] / rate[n][1])
    assert best == "hours", (heard, rate)


def test_the_agent_answers_in_the_model_voice_once_rendered(voice: model_voice.ModelVoice,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(model_voice, "shared", lambda: voice)
    agent = ReceptionistAgent({"voice": "model"}, recognizer=object())  # type: ignore[arg-type]
    reply = agent.answer("what are your opening hours")
    assert reply.audio is voice.get("hours")
    assert agent.answer("can i speak to a person").audio is voice.get("no_transfer")


def test_piper_speaks_until_the_model_voice_is_ready_or_when_it_fails(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    pending = model_voice.ModelVoice()  # never started
    monkeypatch.setattr(model_voice, "shared", lambda: pending)
    agent = ReceptionistAgent({"voice": "model"}, recognizer=object())  # type: ignore[arg-type]
    assert agent.answer("what are your opening hours").audio is prompts.load("hours")

    broken = model_voice.ModelVoice(tmp_path).start()  # no checkpoint there
    assert broken.wait(60)
    assert "weights" in broken.error or "config" in broken.error, broken.error
    monkeypatch.setattr(model_voice, "shared", lambda: broken)
    agent = ReceptionistAgent({"voice": "model"}, recognizer=object())  # type: ignore[arg-type]
    assert agent.answer("what are your opening hours").audio is prompts.load("hours")
