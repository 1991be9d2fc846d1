"""The receptionist's replies spoken by talkover's own unit LM + vocoder (dialplan
`voice = "model"`) instead of the pre-rendered piper prompts.

The shipped checkpoint (engine/model/weights/agent) speaks every reply text of the script once
per engine process, all texts as rows of one batch stepped frame by frame (engine/model/speak.py),
in a background thread started by the first call that asks for it (about 10 s on one core for
the ~100 s of replies). Until that is done, and if it fails, the piper prompt is played and the
log says so. The replies then go through the turn controller like any prompt: barge-in, hold,
transfer and hang-up work unchanged.
"""

from __future__ import annotations

import atexit
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from engine.agents.receptionist.prompts import prompt_texts
from engine.logs import get_logger

if TYPE_CHECKING:
    from engine.model.model import SpeechModel

BATCH = 5  # texts rendered together (one batch each): a stop waits for one batch at most
WEIGHTS = Path(__file__).resolve().parents[2] / "model" / "weights" / "agent"
log = get_logger(component="receptionist-voice")


class ModelVoice:
    def __init__(self, weights: Path = WEIGHTS, model: "SpeechModel | None" = None,
                 names: tuple[str, ...] | None = None) -> None:
        """`model`: an already loaded trained model to speak with (the engine's), else `weights`;
        `names`: only these replies (default: all of prompts.prompt_texts())."""
        self.weights, self.model, self.names = weights, model, names
        self._audio: dict[str, np.ndarray] = {}
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
        self._stop = threading.Event()
        self.error: str = ""

    def start(self) -> "ModelVoice":
        if self._thread is None:
            self._thread = threading.Thread(target=self._render, name="receptionist-voice", daemon=True)
            self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """True once every reply is rendered (or rendering failed: see `error`)."""
        return self._done.wait(timeout)

    def get(self, name: str) -> np.ndarray | None:
        """The named reply (prompts.prompt_texts) in the model's voice, or None while not rendered."""
        return self._audio.get(name)

    def close(self) -> None:
        """Stop rendering (at the next batch of texts) and wait for the thread: a thread still in
        torch when the interpreter exits aborts the process."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _render(self) -> None:
        try:
            t0 = time.perf_counter()
            from engine.model.checkpoint import load_checkpoint  # torch: only once a call asks for this voice

            model, texts = self.model or load_checkpoint(self.weights), prompt_texts()
            names = list(self.names or texts)
            for i in range(0, len(names), BATCH):
                if self._stop.is_set():
                    return
                self._audio.update(render(model, {n: texts[n] for n in names[i : i + BATCH]}))
            seconds = sum(a.size for a in self._audio.values()) / 16000
            log.info("model voice ready", replies=len(self._audio), audio_s=round(seconds, 1),
                     render_s=round(time.perf_counter() - t0, 1),
                     model="the engine's" if self.model else str(self.weights))
        except Exception as exc:  # a missing torch or broken weights: the piper prompts stay
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("model voice failed: the piper prompts are played", error=self.error)
        finally:
            self._done.set()


def render(model: "SpeechModel", texts: dict[str, str]) -> dict[str, np.ndarray]:
    """{name: int16 16 kHz reply}: each text spoken by the model's unit LM + vocoder."""
    from engine.model.speak import speak

    if model.frontend is None:
        raise ValueError("the model has no trained unit LM (its checkpoint has no frontend.json)")
    names = list(texts)
    spoken = speak(model, model.frontend, [texts[n] for n in names])
    frame = model.cfg.frame_samples
    out = {}
    for row, name in enumerate(names):
        pcm = spoken.pcm[row, : spoken.lengths[row] * frame] * 32768.0
        audio = np.clip(np.round(pcm), -32768, 32767).astype(np.int16)
        audio.setflags(write=False)  # shared by every call
        out[name] = audio
    return out


@lru_cache(maxsize=4)
def shared(model: "SpeechModel | None" = None, names: tuple[str, ...] | None = None) -> ModelVoice:
    """The engine process's model voice (of the shipped weights, or of the engine's own model;
    all replies or only `names`), rendering from its first use; stopped at exit."""
    voice = ModelVoice(model=model, names=names).start()
    atexit.register(voice.close)
    return voice
