"""What the SIP and WebRTC worker processes share around their work: the command line the
supervisor starts them with (resolved config, name, status pipe), their logging, and the
status pipe they report on once a second."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from engine.logs import configure_logging
from gateway.config import Config, load_resolved


def worker_args(prog: str, default_name: str, argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    """The worker's arguments and its config, with logging configured under its name."""
    ap = argparse.ArgumentParser(prog=prog)
    ap.add_argument("--config", required=True, help="resolved config JSON written by the supervisor")
    ap.add_argument("--name", default=default_name)
    ap.add_argument("--status-fd", type=int, default=None)
    args = ap.parse_args(argv)
    cfg = load_resolved(args.config)
    configure_logging(cfg.log.level, cfg.log.format, process=args.name)
    return args, cfg


class StatusPipe:
    """One JSON status object a line to the supervisor; closed without a --status-fd."""

    def __init__(self, fd: int | None) -> None:
        self._file = os.fdopen(fd, "w", buffering=1) if fd is not None else None

    @property
    def open(self) -> bool:
        return self._file is not None

    def send(self, status: dict[str, Any]) -> bool:
        """False once the supervisor is gone (the pipe broke); the pipe is closed from then on."""
        if self._file is None:
            return False
        try:
            self._file.write(json.dumps(status) + "\n")
            return True
        except (BrokenPipeError, OSError):
            self._file = None
            return False
