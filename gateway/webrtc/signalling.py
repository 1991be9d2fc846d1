"""The supervisor ↔ WebRTC worker hop of the signalling: one JSON line each way per request
over the worker's Unix socket. No aiortc here: the supervisor imports this module."""

from __future__ import annotations

import json
import socket
from dataclasses import asdict, dataclass, field
from typing import Any

SOCKET_NAME = "webrtc.sock"
REPLY_TIMEOUT_S = 30.0
MAX_LINE = 1 << 20


@dataclass
class SignalRequest:
    method: str
    path: str  # /webrtc/...
    query: dict[str, str] = field(default_factory=dict)
    body: str = ""
    peer: str = ""  # the HTTP client's address

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> "SignalRequest":
        raw = json.loads(line)
        if not isinstance(raw, dict):
            raise ValueError("a signalling request is a JSON object")
        return cls(**{k: str(raw.get(k, "")) for k in ("method", "path", "body", "peer")},
                   query={str(k): str(v) for k, v in dict(raw.get("query") or {}).items()})


@dataclass
class SignalReply:
    status: int
    body: dict[str, Any]
    retry_after_s: int = 0

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode() + b"\n"


def forward(sock_path: str, request: SignalRequest, timeout: float = REPLY_TIMEOUT_S) -> SignalReply:
    """Blocking (an HTTP handler thread): the worker's reply, or 503 when it is not there."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(sock_path)
            sock.sendall(request.encode())
            buf = b""
            while not buf.endswith(b"\n") and len(buf) < MAX_LINE:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buf += chunk
        raw = json.loads(buf)
        return SignalReply(int(raw["status"]), dict(raw["body"]), int(raw.get("retry_after_s", 0)))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return SignalReply(503, {"error": f"WebRTC worker unavailable: {exc}"}, retry_after_s=5)
