"""structlog set-up shared by every talkover process (gateway imports it; engine owns it
because the engine must never import the gateway).

JSON lines when stderr is not a terminal (production), coloured console otherwise. Bind
`call_id` to a logger for everything that belongs to a call: `log.bind(call_id=...)`.
"""

from __future__ import annotations

import logging
import sys

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure_logging(level: str = "info", fmt: str = "auto", process: str = "") -> None:
    json_out = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if process:
        processors.insert(0, _add_process(process))
    processors += [
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer() if json_out else structlog.dev.ConsoleRenderer(colors=False),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),  # one write per line: processes share the log
        cache_logger_on_first_use=True,
    )


def _add_process(name: str) -> structlog.typing.Processor:
    def add(_: object, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
        event.setdefault("process", name)
        return event

    return add


def get_logger(**bound: object) -> structlog.typing.FilteringBoundLogger:
    """Lazy: a module-level logger picks up the configuration made later in main()."""
    return structlog.get_logger(**bound)  # type: ignore[no-any-return]
