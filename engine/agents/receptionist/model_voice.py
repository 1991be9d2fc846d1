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

import threading
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.agents.receptionist.prompts import prompt_texts
from engine.logs import get_logger

WEIGHTS = Path(__file__).resolve().parents[2] / "model" / "weights" / "agent"
log = get_logger(component="receptionist-voice")


class ModelVoice:
    def __init__(self, weights: Path = WEIGHTS) -> None:
        self.weights = weights
        self._audio: dict[str, np.ndarray] = {}
        self._thread: threading.Thread | None = None
        self._done = threading.Event()
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

    def _render(self) -> None:
        try:
            t0 = time.perf_counter()
            self._audio = render(self.weights, prompt_texts())
            seconds = sum(a.size for a in self._audio.values()) / 16000
            log.info("model voice ready", replies=len(self._audio), audio_s=round(seconds, 1),
                     render_s=round(time.perf_counter() - t0, 1), weights=str(self.weights))
        except Exception as exc:  # a missing torch or broken weights: the piper prompts stay
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("model voice failed: the piper prompts are played", error=self.error)
        finally:
            self._done.set()


def render(weights: Path, texts: dict[str, str]) -> dict[str, np.ndarray]:
    """{name: int16 16 kHz reply}: each text spoken by the checkpoint's unit LM + vocoder."""
    from engine.model.checkpoint import load_checkpoint
    from engine.model.speak import speak

    model = load_checkpoint(weights)
    if model.frontend is None:
        raise ValueError(f"{weights}: no trained unit LM (frontend.json missing)")
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


@lru_cache(maxsize=1)
def shared() -> ModelVoice:
    """The engine process's one model voice, rendering from its first use."""
    return ModelVoice().start()
