"""The supervisor's HTTP listener: /metrics (all processes), /healthz, /calls."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

Health = Callable[[], tuple[bool, dict[str, Any]]]
Calls = Callable[[], list[dict[str, Any]]]


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
        else:
            self._json(404, {"error": f"no such path: {path}"})

    def _json(self, code: int, body: dict[str, Any]) -> None:
        self._reply(code, json.dumps(body).encode(), "application/json")

    def _reply(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # access logs would drown the call logs


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, health: Health, calls: Calls) -> None:
        super().__init__((host, port), _Handler)
        self.health, self.calls = health, calls
        self._thread = threading.Thread(target=self.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=2)
