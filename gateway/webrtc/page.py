"""The softphone's static files (gateway/static): served by the supervisor's HTTP listener.

`/` and `/call/<entry>` serve the page (the entry picks the dialplan entry; so does
`?entry=NAME`); `/static/<name>` serves its scripts and styles. No build step, no CDN.
"""

from __future__ import annotations

import re
from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".ico": "image/x-icon"}
_NAME = re.compile(r"^[A-Za-z0-9_-]+\.[a-z]+$")


def is_page_path(path: str) -> bool:
    return path == "/" or path.startswith("/static/") or bool(re.fullmatch(r"/call/[A-Za-z0-9_.-]+", path))


def static_file(path: str) -> tuple[int, bytes, str]:
    """(status, body, content type) for a GET of a page path."""
    name = "index.html" if path == "/" or path.startswith("/call/") else path[len("/static/"):]
    if not _NAME.match(name) or Path(name).suffix not in _TYPES:
        return 404, b"not found\n", "text/plain"
    file = STATIC_DIR / name
    if not file.is_file():
        return 404, b"not found\n", "text/plain"
    return 200, file.read_bytes(), _TYPES[file.suffix]
