"""What the SIP and WebRTC worker processes share around their work: the command line the
supervisor starts them with (resolved config, name, status pipe), their logging, the status
pipe they report on once a second, and how a message from the engine reaches its call."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Protocol

from engine import wire
from engine.logs import configure_logging
from engine.session import Command, CommandKind
from gateway.config import Config, load_resolved

if TYPE_CHECKING:
    from gateway.media.chain import CallMedia

MEDIA_COMMANDS = (CommandKind.FLUSH, CommandKind.RESUME, CommandKind.PAUSE)  # the media chain acts on these itself


class EngineCall(Protocol):
    media: CallMedia | None


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


def exit_skipping_finalisers(code: int) -> None:
    """End the worker process without interpreter teardown. Native libraries must not run their
    finalisers then: pjsua2's SWIG destructors touch an already destroyed pjsua, and livekit's
    tokio runtime panics in a non-unwinding FFI callback (SIGABRT, seen in CI at exit)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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


def route_engine_message(
    msg: wire.Decoded,
    call_of: Callable[[int], EngineCall | None],
    command: Callable[[Any, Command], None],
    granted: Callable[[int, int, str], None],
) -> None:
    """On the engine-link thread: agent audio and playout commands go straight to the call's
    media chain; other commands (`command(call, cmd)`) and slot grants (`granted(key, slot,
    reason)`) are for the worker to hand to its control loop."""
    kind, slot = msg[0], msg[1]
    if kind is wire.MsgType.AUDIO:
        call = call_of(slot)
        if call is not None and call.media is not None:
            call.media.on_audio(msg[2])  # type: ignore[arg-type]
    elif kind is wire.MsgType.COMMAND:
        cmd: Command = msg[2]  # type: ignore[assignment]
        call = call_of(slot)
        if call is None or call.media is None:
            return
        if cmd.kind in MEDIA_COMMANDS:
            call.media.on_command(cmd)
        else:
            command(call, cmd)
    elif kind is wire.MsgType.OPENED:
        granted(msg[2], slot, msg[3])  # type: ignore[arg-type]
