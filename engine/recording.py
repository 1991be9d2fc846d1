"""Optional per-call recording: what the engine heard from the caller and what it sent back."""

from __future__ import annotations

import re
import wave
from pathlib import Path

from engine.session import SAMPLE_RATE


def _open(path: Path) -> wave.Wave_write:
    w = wave.open(str(path), "wb")
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(SAMPLE_RATE)
    return w


class CallRecorder:
    """`<dir>/<call_id>.caller.wav` (every caller frame received) and `.agent.wav` (sent)."""

    def __init__(self, directory: str, call_id: str) -> None:
        safe = re.sub(r"[^A-Za-z0-9_.@-]", "_", call_id)[:120]
        base = Path(directory)
        base.mkdir(parents=True, exist_ok=True)
        self.caller_path = base / f"{safe}.caller.wav"
        self.agent_path = base / f"{safe}.agent.wav"
        self._caller = _open(self.caller_path)
        self._agent = _open(self.agent_path)

    def caller(self, pcm: bytes) -> None:
        self._caller.writeframesraw(pcm)

    def agent(self, pcm: bytes) -> None:
        self._agent.writeframesraw(pcm)

    def close(self) -> None:
        self._caller.close()
        self._agent.close()
