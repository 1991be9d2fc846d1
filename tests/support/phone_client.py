"""Test-side driver for tests/support/phone.py (one phone = one child process).

    with Phone(answer=True) as callee, Phone() as caller:
        caller.call(callee.uri)
        callee.wait_for("call_state", lambda e: e["state"] == "CONFIRMED")
"""

from __future__ import annotations

import itertools
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

PHONE_SCRIPT = Path(__file__).resolve().parent / "phone.py"
Event = dict[str, Any]
Predicate = Callable[[Event], bool]


class PhoneError(RuntimeError):
    pass


class PhoneTimeout(PhoneError, TimeoutError):
    pass


class Phone:
    """Spawns a phone process and exposes its event stream.

    Events are consumed in order by wait_for(); events that do not match are kept in a
    backlog so a later wait_for() for them still succeeds (an event is returned once).
    """

    def __init__(
        self,
        port: int = 0,
        *,
        answer: bool = False,
        ring_ms: int = 0,
        answer_code: int = 200,
        codecs: Sequence[str] = ("G722", "PCMU", "PCMA"),
        refer: str = "accept",
        user: str = "phone",
        log_file: str | Path | None = None,
        python: str = sys.executable,
        start_timeout: float = 10.0,
        host: str = "127.0.0.1",
        wrap: Sequence[str] = (),
    ) -> None:
        # host: the address it binds (SIP and RTP); wrap: a command prefix, e.g. ["ip", "netns", "exec", NS]
        argv = [*wrap, python, str(PHONE_SCRIPT), "--host", host, "--port", str(port), "--ring-ms", str(ring_ms)]
        argv += ["--answer-code", str(answer_code), "--codecs", ",".join(codecs)]
        argv += ["--refer", refer, "--user", user]
        if answer:
            argv.append("--answer")
        if log_file:
            argv += ["--log-file", str(log_file)]
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        self._events: queue.Queue[Event | None] = queue.Queue()
        self._backlog: list[Event] = []
        self.log: deque[Event] = deque(maxlen=200)  # every event seen, for diagnostics
        self._stderr: deque[str] = deque(maxlen=60)
        self._ids = itertools.count(1)
        self._eof = False
        threading.Thread(target=self._pump_stdout, daemon=True).start()
        threading.Thread(target=self._pump_stderr, daemon=True).start()
        try:
            ready = self.wait_for("ready", timeout=start_timeout)
        except BaseException:
            self.close()
            raise
        self.port: int = int(ready["port"])
        self.uri: str = str(ready["uri"])

    # ---- plumbing ----

    def _pump_stdout(self) -> None:
        assert self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self._events.put(json.loads(line))
            except json.JSONDecodeError:
                self._stderr.append(f"[non-JSON stdout] {line.rstrip()}")
        self._events.put(None)

    def _pump_stderr(self) -> None:
        assert self._proc.stderr is not None
        for line in self._proc.stderr:
            self._stderr.append(line.rstrip())

    def send(self, cmd: str, **fields: Any) -> int:
        """Send a command without waiting; returns its id (echoed in ok/error events)."""
        cid = next(self._ids)
        if self._proc.stdin is None or self._proc.poll() is not None:
            raise PhoneError(f"phone process is gone (rc={self._proc.poll()})\n{self.diagnostics()}")
        self._proc.stdin.write(json.dumps({"cmd": cmd, "id": cid, **fields}) + "\n")
        self._proc.stdin.flush()
        return cid

    def command(self, cmd: str, timeout: float = 5.0, **fields: Any) -> Event:
        """Send a command and wait for its ok; raises PhoneError on an error reply."""
        cid = self.send(cmd, **fields)
        reply = self.wait_for(
            ("ok", "error"), lambda e: e.get("id") == cid, timeout=timeout
        )
        if reply["event"] == "error":
            raise PhoneError(f"{cmd} failed: {reply.get('message')}\n{self.diagnostics()}")
        return reply

    def wait_for(
        self,
        event: str | Sequence[str],
        predicate: Predicate | None = None,
        timeout: float = 10.0,
    ) -> Event:
        names = (event,) if isinstance(event, str) else tuple(event)

        def matches(e: Event) -> bool:
            return e.get("event") in names and (predicate is None or predicate(e))

        for i, e in enumerate(self._backlog):
            if matches(e):
                return self._backlog.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._eof:
                why = "process exited" if self._eof else f"timeout after {timeout:.1f}s"
                raise PhoneTimeout(f"waiting for {names} on {self._name()}: {why}\n{self.diagnostics()}")
            try:
                got = self._events.get(timeout=remaining)
            except queue.Empty:
                continue
            if got is None:
                self._eof = True
                continue
            self.log.append(got)
            if matches(got):
                return got
            self._backlog.append(got)

    def drain(self) -> list[Event]:
        """Return (and forget) all events received so far that nobody waited for."""
        while True:
            try:
                e = self._events.get_nowait()
            except queue.Empty:
                break
            if e is None:
                self._eof = True
                break
            self.log.append(e)
            self._backlog.append(e)
        out, self._backlog = self._backlog, []
        return out

    def diagnostics(self) -> str:
        events = "\n".join(f"  {json.dumps(e)}" for e in list(self.log)[-30:])
        err = "\n".join(f"  {line}" for line in list(self._stderr)[-20:])
        return f"recent events:\n{events}\nrecent stderr:\n{err}"

    def _name(self) -> str:
        return f"phone(pid={self._proc.pid}, port={getattr(self, 'port', '?')})"

    # ---- convenience wrappers ----

    def call(self, uri: str, codecs: Sequence[str] | None = None, headers: dict[str, str] | None = None) -> Event:
        fields: dict[str, Any] = {"uri": uri}
        if codecs is not None:
            fields["codecs"] = list(codecs)
        if headers:
            fields["headers"] = headers
        return self.command("call", **fields)

    def wait_state(self, state: str, timeout: float = 10.0) -> Event:
        return self.wait_for("call_state", lambda e: e["state"] == state, timeout=timeout)

    def play(self, wav: str | Path, loop: bool = False) -> Event:
        return self.command("play", wav=str(wav), loop=loop)

    def record_start(self) -> Event:
        return self.command("record_start")

    def record_stop(self, path: str | Path) -> Event:
        return self.command("record_stop", path=str(path))

    def echo(self, delay_ms: float, gain_db: float) -> Event:
        return self.command("echo", delay_ms=delay_ms, gain_db=gain_db)

    def dtmf(self, digits: str) -> Event:
        return self.command("dtmf", digits=digits)

    def hold(self, mode: str = "sendonly") -> Event:
        return self.command("hold", mode=mode)

    def unhold(self) -> Event:
        return self.command("unhold")

    def hangup(self, code: int | None = None) -> Event:
        return self.command("hangup", **({} if code is None else {"code": code}))

    def stats(self) -> Event:
        self.command("stats")
        return self.wait_for("stats")

    # ---- lifetime ----

    def close(self, timeout: float = 5.0) -> int | None:
        """Ask the phone to quit (hangs up any call); kill it if it does not exit in time."""
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write('{"cmd": "quit"}\n')
                self._proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=timeout)
        return self._proc.returncode

    def __enter__(self) -> Phone:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
