"""The supervisor's HTTP listener: /metrics (all processes), /healthz, /calls, the softphone
page (`/`, gateway/webrtc/page.py) and WebRTC signalling (`POST /webrtc/...`, forwarded to the
WebRTC worker: gateway/webrtc/signalling.py)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

from gateway.webrtc.page import is_page_path, static_file
from gateway.webrtc.signalling import SignalReply, SignalRequest

Health = Callable[[], tuple[bool, dict[str, Any]]]
Calls = Callable[[], list[dict[str, Any]]]
Signal = Callable[[SignalRequest], SignalReply]
MAX_BODY = 256 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: "HttpServer"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            ok, detail = self.server.health()
            self._json(200 if ok else 503, {"status": "ok" if ok else "unavailable", **detail})
        elif path == "/calls":
            self._json(200, {"calls": self.server.calls()})
        elif is_page_path(path):
            self._reply(*static_file(path))
        else:
            self._json(404, {"error": f"no such path: {path}"})

    def do_POST(self) -> None:  # noqa: N802
        path, _, query = self.path.partition("?")
        if not path.startswith("/webrtc/"):
            self._json(404, {"error": f"no such path: {path}"})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._json(413 if length > MAX_BODY else 400, {"error": "a body of at most 256 KiB with a Content-Length"})
            return
        body = self.rfile.read(length).decode(errors="replace")
        params = {k: v[0] for k, v in parse_qs(query).items()}
        reply = self.server.webrtc(SignalRequest("POST", path, params, body, self.client_address[0]))
        self._json(reply.status, reply.body, {"Retry-After": str(reply.retry_after_s)} if reply.retry_after_s else None)

    def _json(self, code: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._reply(code, json.dumps(body).encode(), "application/json", headers)

    def _reply(self, code: int, body: bytes, ctype: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # access logs would drown the call logs


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, health: Health, calls: Calls, webrtc: Signal) -> None:
        super().__init__((host, port), _Handler)
        self.health, self.calls, self.webrtc = health, calls, webrtc
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=2)
