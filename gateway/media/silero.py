"""Silero VAD (v5/v6 ONNX) through a raw onnxruntime session: no torch anywhere.

The model file comes from the silero-vad wheel, which deploy/install.sh installs with
--no-deps (its declared dependency is torch; we only need the .onnx inside). It is never
downloaded at run time. One InferenceSession per process is shared by every call (run() is
thread-safe); each call keeps its own recurrent state and 64-sample context.

The model takes 512 new samples (32 ms) at 16 kHz, or 256 at 8 kHz, plus the previous
chunk's last 64 (32) samples as context; `SileroVad.push` buffers 20 ms frames into those
chunks and returns a speech probability each time a chunk completes (~0.1 ms per chunk,
single-threaded on the calling thread) — or, attached to a `SileroBatch`, queues the chunk so
that every call of a worker runs in one inference per media tick (gateway/media/vad_batch.py).
"""

from __future__ import annotations

import importlib.resources
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort

if TYPE_CHECKING:
    from gateway.media.vad_batch import SileroBatch

MODEL_PACKAGE = "silero_vad"
MODEL_NAME = "silero_vad.onnx"
CHUNK = {16000: 512, 8000: 256}
CONTEXT = {16000: 64, 8000: 32}


class VadModelError(RuntimeError):
    """The Silero model is missing or could not be run."""


def model_path() -> Path:
    try:
        path = Path(str(importlib.resources.files(MODEL_PACKAGE) / "data" / MODEL_NAME))
    except ModuleNotFoundError:
        raise VadModelError(
            "silero-vad is not installed (its ONNX model is needed): run deploy/install.sh"
        ) from None
    if not path.is_file():
        raise VadModelError(f"Silero model not found at {path}: reinstall silero-vad (deploy/install.sh)")
    return path


class SileroModel:
    _shared: "SileroModel | None" = None
    _lock = threading.Lock()

    def __init__(self, path: Path | None = None) -> None:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1  # run on the caller's thread: no pool spinning beside pjsua's clock
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(
                str(path or model_path()), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except VadModelError:
            raise
        except Exception as exc:  # onnxruntime raises its own exception types
            raise VadModelError(f"cannot load the Silero model: {exc}") from exc

    @classmethod
    def shared(cls) -> "SileroModel":
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            return cls._shared


class SileroVad:
    """One call's streaming Silero state."""

    def __init__(self, model: SileroModel | None = None, rate: int = 16000) -> None:
        if rate not in CHUNK:
            raise ValueError(f"Silero VAD runs at 8000 or 16000 Hz, not {rate}")
        self._session = (model or SileroModel.shared()).session
        self.rate = rate
        self._chunk, self._ctx = CHUNK[rate], CONTEXT[rate]
        self._sr = np.array(rate, dtype=np.int64)
        self.batch: "SileroBatch | None" = None  # set: chunks run with every other stream's of the tick
        self.reset()

    def reset(self) -> None:
        self.generation = getattr(self, "generation", 0) + 1  # results queued before this are stale
        self._state = np.zeros((2, 1, 128), dtype=np.float32)
        self._input = np.zeros((1, self._ctx + self._chunk), dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.probability = 0.0
        self.chunks = 0

    def push(self, samples: np.ndarray) -> float | None:
        """Add int16 samples; the probability of the last chunk completed by them, or None.
        With a batch (SileroBatch.attach) a completed chunk waits for the batch's run instead:
        None is returned and `probability` is updated by the run."""
        pending = np.concatenate([self._pending, samples.astype(np.float32) * (1.0 / 32768.0)])
        prob: float | None = None
        start = 0
        while pending.size - start >= self._chunk:
            self._input[0, : self._ctx] = self._input[0, -self._ctx :]  # last chunk's tail = context
            self._input[0, self._ctx :] = pending[start : start + self._chunk]
            start += self._chunk
            self.chunks += 1
            if self.batch is not None:
                self.batch.add_chunk(self, self._input[0])
                continue
            try:
                out, self._state = self._session.run(None, {"input": self._input, "state": self._state, "sr": self._sr})
            except Exception as exc:
                raise VadModelError(f"Silero model failed: {exc}") from exc
            prob = float(out[0, 0])
        self._pending = pending[start:]
        if prob is not None:
            self.probability = prob
        return prob

    @property
    def has_pending(self) -> bool:
        """Samples wait for the next chunk: a peek would see newer audio than `probability`."""
        return bool(self._pending.size)

    def peek_window(self) -> np.ndarray | None:
        """The newest chunk's worth of samples (the last chunk's tail plus what is pending), or
        None when nothing is pending (the last probability is then the newest)."""
        if not self._pending.size:
            return None
        return np.concatenate([self._input[0], self._pending])[-(self._ctx + self._chunk) :]

    def peek(self) -> float:
        """The probability of the newest chunk's worth of samples, from a copy of the state:
        nothing is committed. A chunk boundary comes every 32 ms, frames every 20: a speech onset
        otherwise waits for the chunk that completes after it (measured: ~15 ms off the barge-in
        latency). Same cost as a chunk."""
        recent = self.peek_window()
        if recent is None:
            return self.probability
        try:
            out, _ = self._session.run(None, {"input": recent[None, :], "state": self._state.copy(), "sr": self._sr})
        except Exception as exc:
            raise VadModelError(f"Silero model failed: {exc}") from exc
        return float(out[0, 0])

    # -- batch side (gateway/media/vad_batch.py) ------------------------------------------
    def batch_state(self) -> np.ndarray:
        return self._state

    def batch_result(self, generation: int, probability: float, state: np.ndarray) -> None:
        """A queued chunk's result; dropped if the stream was reset since it was queued."""
        if generation == self.generation:
            self.probability, self._state = probability, state
