"""The receptionist's spoken prompts: pre-rendered offline with piper's joe voice, committed as
16 kHz mono WAVs next to this file, so the agent needs no TTS at run time.

Render them again after editing script.py (needs the `data` extra):
`python -m engine.agents.receptionist.prompts`
"""

from __future__ import annotations

import sys
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.agents.receptionist.script import FALLBACK, INTENTS, WELCOME

PROMPT_DIR = Path(__file__).with_name("prompts")
NO_TRANSFER = "Sorry, nobody can take your call right now. Please call again during our opening hours."


def prompt_texts() -> dict[str, str]:
    texts = {"welcome": WELCOME, FALLBACK.name: FALLBACK.reply, "no_transfer": NO_TRANSFER}
    texts.update({i.name: i.reply for i in INTENTS if i.reply})
    return texts


def prompt_path(name: str) -> Path:
    return PROMPT_DIR / f"{name}.wav"


@lru_cache(maxsize=None)
def load(name: str) -> np.ndarray:
    from engine.agents.prompts import load_prompt

    audio = load_prompt(str(prompt_path(name)))
    assert audio is not None
    audio.setflags(write=False)  # shared by every call
    return audio


def render() -> int:
    from engine.data.voices import AGENT, say, write_wav

    PROMPT_DIR.mkdir(exist_ok=True)
    total = 0
    for name, text in prompt_texts().items():
        audio = say(AGENT, text)
        write_wav(prompt_path(name), audio)
        total += prompt_path(name).stat().st_size
        print(f"{name:12s} {audio.size / 16000:5.1f} s  {text}")
    print(f"{len(prompt_texts())} prompts, {total / 1e6:.2f} MB in {PROMPT_DIR}")
    return 0


if __name__ == "__main__":
    sys.exit(render())
