"""The engine's side of the recognizer process (asr_worker.py): submit a caller turn, poll
for its transcript. Neither call blocks: the turn goes to a file in /dev/shm and one short
line to the process's stdin; results are read from a non-blocking pipe.

One recognizer process serves every receptionist call of an engine (decodes are queued;
~0.1-0.2 s of CPU per second of speech). It is started with the first receptionist call and
restarted if it dies (that turn gets an empty transcript: the fallback answer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine.agents.receptionist.asr import DEFAULT_MODE, Transcript
from engine.logs import get_logger

log = get_logger(component="recognizer")
_SHM = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())


class Recognizer:
    def __init__(self, mode: str = DEFAULT_MODE) -> None:
        self.mode = mode
        self._proc: subprocess.Popen[bytes] | None = None
        self._buf = b""
        self._next_id = 0
        self._pending: set[int] = set()
        self._results: dict[int, Transcript] = {}
        self.ready = False

    def start(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            return
        if self._proc is not None:
            log.warning("recognizer process died: restarting", code=self._proc.returncode)
            for req in self._pending:  # their turns get the fallback answer
                self._results[req] = Transcript("", 0.0, 0.0)
            self._pending.clear()
        cmd = [sys.executable, "-m", "engine.agents.receptionist.asr_worker", "--mode", self.mode]
        self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._buf, self.ready = b"", False
        log.info("recognizer started", mode=self.mode, pid=self._proc.pid)

    def submit(self, pcm: bytes) -> int:
        self.start()
        assert self._proc is not None and self._proc.stdin is not None
        req = self._next_id
        self._next_id += 1
        path = _SHM / f"talkover-turn-{os.getpid()}-{req}.pcm"
        path.write_bytes(pcm)
        try:
            self._proc.stdin.write(json.dumps({"id": req, "path": str(path)}).encode() + b"\n")
            self._proc.stdin.flush()
            self._pending.add(req)
        except OSError:  # the process is gone: start() restarts it on the next turn
            path.unlink(missing_ok=True)
            self._results[req] = Transcript("", 0.0, 0.0)
        return req

    def result(self, req: int) -> Transcript | None:
        """The transcript of request `req`, or None while it is still being decoded."""
        if req not in self._results:
            self._read()
        if req not in self._results and self._proc is not None and self._proc.poll() is not None:
            self.start()  # died: pending requests get empty transcripts
        return self._results.pop(req, None)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """For tests and benches: block until the decoder has loaded."""
        self.start()
        deadline = time.monotonic() + timeout
        while not self.ready and time.monotonic() < deadline:
            self._read()
            time.sleep(0.01)
        return self.ready

    def _read(self) -> None:
        if self._proc is None or self._proc.stdout is None:
            return
        while True:
            try:
                chunk = os.read(self._proc.stdout.fileno(), 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buf += chunk
        *lines, self._buf = self._buf.split(b"\n")
        for line in lines:
            msg = json.loads(line)
            if msg.get("ready"):
                self.ready = True
                continue
            if msg.get("error"):
                log.error("recognizer failed on a turn", error=msg["error"])
            self._pending.discard(msg["id"])
            self._results[msg["id"]] = Transcript(msg["text"], msg["decode_s"], msg["audio_s"])

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


_shared: dict[str, Recognizer] = {}


def shared(mode: str = DEFAULT_MODE) -> Recognizer:
    """The engine-wide recognizer for `mode`, started on first use."""
    if mode not in _shared:
        _shared[mode] = Recognizer(mode)
        _shared[mode].start()
    return _shared[mode]
