"""Drive Debian's baresip (1.0.0) as an independent SIP phone, non-interactively.

    with Baresip(wav="in.wav", seconds=5) as bs:
        bs.dial("sip:agent@127.0.0.1:5060")
        assert bs.wait_event("CALL_ESTABLISHED")
        bs.wait_event("CALL_CLOSED", timeout=10)   # baresip hangs up when the WAV ends
    heard, rate = bs.received_audio()              # what baresip received, decoded

Control goes over the ctrl_tcp module (JSON in netstrings); audio in comes from the
aufile source, audio out is dumped by the sndfile filter; aubridge is a dummy player.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np

from .audio import Int16Array, read_wav, resample, silence, write_wav

BARESIP = "baresip"
MODULE_PATH = "/usr/lib/baresip/modules"
CODEC_SPECS = {"G722": "G722/16000/1", "PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1"}
RATE = 16000


class BaresipError(RuntimeError):
    pass


def free_port(kind: int = socket.SOCK_DGRAM, host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Baresip:
    """One baresip process with a generated config in a temporary directory.

    `wav` is played into the call (resampled to 16 kHz and padded with silence to
    `seconds`); baresip ends the call by itself when that source reaches its end, so
    `seconds` is the call duration from answer. `answer=True` auto-answers incoming calls.
    """

    def __init__(
        self,
        wav: str | Path | None = None,
        seconds: float = 5.0,
        *,
        codecs: Sequence[str] = ("G722", "PCMU", "PCMA"),
        answer: bool = False,
        user: str = "baresip",
        host: str = "127.0.0.1",
        workdir: str | Path | None = None,
        source_rate: int | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        if shutil.which(BARESIP) is None:
            raise BaresipError("baresip is not installed (apt-get install baresip)")
        self._own_dir = workdir is None
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="baresip-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.sip_port = free_port(socket.SOCK_DGRAM, host)
        self.ctrl_port = free_port(socket.SOCK_STREAM, host)
        self.uri = f"sip:{user}@{host}:{self.sip_port}"
        self.events: list[dict[str, Any]] = []
        self._buf = b""
        self._token = 0
        # baresip 1.0.0's own 16k->8k resampler cuts everything above ~1.5 kHz, so feed
        # narrowband codecs an 8 kHz source. The source rate is fixed per process, so this
        # follows the first (preferred) codec.
        self.source_rate = source_rate or (16000 if codecs[0].upper() == "G722" else 8000)
        self._write_source(wav, seconds)
        self._write_config(codecs, answer, user)
        self._log = open(self.dir / "baresip.log", "wb")
        self._proc = subprocess.Popen(
            [BARESIP, "-f", str(self.dir)],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        try:
            self._sock = self._connect(start_timeout)
        except BaseException:
            self.close()
            raise

    # ---- setup ----

    def _write_source(self, wav: str | Path | None, seconds: float) -> None:
        samples: Int16Array = silence(0.0)
        if wav is not None:
            data, rate = read_wav(wav)
            samples = resample(data, rate, self.source_rate)
        pad = max(0, int(seconds * self.source_rate) - len(samples))
        self.source = self.dir / "source.wav"
        padding = silence(pad / self.source_rate, self.source_rate)
        write_wav(self.source, np.concatenate([samples, padding]), self.source_rate)

    def _write_config(self, codecs: Sequence[str], answer: bool, user: str) -> None:
        config = {
            "poll_method": "epoll",
            "sip_listen": f"{self.host}:{self.sip_port}",
            "net_interface": self.host,  # an interface name like "lo" fails in 1.0.0
            "audio_player": "aubridge,nowhere",  # no sound card: a player that goes nowhere
            "audio_alert": "aubridge,nowhere",
            "audio_source": f"aufile,{self.source}",
            "ausrc_srate": str(self.source_rate),  # aufile rejects files at any other rate
            "ausrc_channels": "1",
            "auplay_srate": str(RATE),
            "auplay_channels": "1",
            "snd_path": str(self.dir),  # sndfile writes dump-<time>-{enc,dec}.wav here
            "ctrl_tcp_listen": f"{self.host}:{self.ctrl_port}",
            "module_path": MODULE_PATH,
        }
        lines = [f"{k}\t{v}" for k, v in config.items()]
        lines += [f"module\t{m}.so" for m in ("g711", "g722", "aufile", "aubridge", "sndfile")]
        # menu provides the dial/hangup/quit commands that ctrl_tcp executes.
        lines += [f"module_app\t{m}.so" for m in ("account", "menu", "ctrl_tcp")]
        (self.dir / "config").write_text("\n".join(lines) + "\n")
        specs = ",".join(CODEC_SPECS[c.upper()] for c in codecs)  # bare "G722" means G722/8000
        params = f";regint=0;audio_codecs={specs}" + (";answermode=auto" if answer else "")
        (self.dir / "accounts").write_text(f"<sip:{user}@{self.host}>{params}\n")

    def _connect(self, timeout: float) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise BaresipError(f"baresip exited with {self._proc.returncode}\n{self.output()}")
            try:
                return socket.create_connection((self.host, self.ctrl_port), timeout=1.0)
            except OSError:
                if time.monotonic() > deadline:
                    raise BaresipError(f"ctrl_tcp did not come up in {timeout}s\n{self.output()}")
                time.sleep(0.05)  # polling a port that is not open yet; not used for sync

    # ---- ctrl_tcp ----

    def command(self, command: str, params: str = "", timeout: float = 5.0) -> dict[str, Any]:
        """Run a baresip command (e.g. "dial", "hangup", "quit") and return its response."""
        token = self._send(command, params)
        msg = self._next(lambda m: m.get("response") is True and m.get("token") == token, timeout)
        if msg is None:
            raise BaresipError(f"no response to {command!r} in {timeout}s\n{self.output()}")
        return msg

    def _send(self, command: str, params: str = "") -> str:
        self._token += 1
        token = str(self._token)
        body = json.dumps({"command": command, "params": params, "token": token}).encode()
        self._sock.sendall(str(len(body)).encode() + b":" + body + b",")
        return token

    def dial(self, uri: str) -> dict[str, Any]:
        return self.command("dial", uri)

    def hangup(self) -> dict[str, Any]:
        return self.command("hangup")

    def wait_event(self, *types: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """Next ctrl_tcp event whose "type" is one of `types` (earlier ones are kept in
        self.events); None on timeout. Types: CALL_INCOMING, CALL_RINGING, CALL_PROGRESS,
        CALL_ESTABLISHED, CALL_CLOSED, ..."""
        for e in self.events:
            if e.get("type") in types and not e.get("_seen"):
                e["_seen"] = True
                return e
        found = self._next(lambda m: m.get("event") is True and m.get("type") in types, timeout)
        if found is not None:
            found["_seen"] = True
        return found

    def _next(self, match: Any, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        while True:
            msg = self._pop_netstring()
            if msg is not None:
                if msg.get("event") is True:
                    self.events.append(msg)
                if match(msg):
                    return msg
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self._sock.settimeout(remaining)
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                return None
            if not chunk:
                return None  # baresip closed the control connection (it exited)
            self._buf += chunk

    def _pop_netstring(self) -> dict[str, Any] | None:
        colon = self._buf.find(b":")
        if colon < 0:
            return None
        size = int(self._buf[:colon])
        end = colon + 1 + size
        if len(self._buf) < end + 1:
            return None
        payload, self._buf = self._buf[colon + 1 : end], self._buf[end + 1 :]
        return dict(json.loads(payload))

    # ---- results ----

    @property
    def established(self) -> bool:
        return any(e.get("type") == "CALL_ESTABLISHED" for e in self.events)

    def dump(self, kind: str = "dec") -> Path | None:
        """Latest sndfile dump: "dec" = audio baresip received, "enc" = audio it sent."""
        files = sorted(self.dir.glob(f"dump-*-{kind}.wav"))
        return files[-1] if files else None

    def received_audio(self) -> tuple[Int16Array, int]:
        """What baresip heard, decoded, at 16 kHz. Only frames that arrived are written
        (no clock), so lost packets shorten the file instead of leaving gaps."""
        path = self.dump("dec")
        if path is None:
            raise BaresipError(f"no decode dump in {self.dir}\n{self.output()}")
        data, rate = read_wav(path)
        return resample(data, rate, RATE), RATE

    def output(self, tail: int = 4000) -> str:
        text = (self.dir / "baresip.log").read_bytes().decode(errors="replace")
        return text[-tail:]

    # ---- lifetime ----

    def close(self, timeout: float = 5.0) -> int | None:
        if self._proc.poll() is None:
            try:
                self._send("quit")  # baresip exits without answering it
            except (OSError, AttributeError):
                pass
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=timeout)
        sock = getattr(self, "_sock", None)
        if sock is not None:
            sock.close()
        self._log.close()
        return self._proc.returncode

    def cleanup(self) -> None:
        """Remove the generated directory (only if this object created it)."""
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Baresip:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
