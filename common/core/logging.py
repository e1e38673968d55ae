"""Structured logging: one JSON object per line, bound to the request or event being handled.

Context travels in `structlog.contextvars`: the request-id middleware binds `request_id`, the
consumer worker binds `event_id` / `correlation_id` / `event_type` around each handler, so every
line logged below them carries those keys without anyone passing a logger around.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

import orjson
import structlog


def _orjson_dumps(obj: object, default: Callable[[Any], Any] | None = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def _colours_wanted() -> bool:
    """Colour on a terminal; NO_COLOR (no-color.org) turns it off, FORCE_COLOR on even through a pipe
    (`swarm up` sets it for its children when it prints to a terminal itself)."""
    if os.environ.get("NO_COLOR"):
        return False
    return bool(os.environ.get("FORCE_COLOR")) or sys.stderr.isatty()


def configure_logging(service: str, level: str = "info", fmt: str = "json") -> None:
    """Configure structlog and the stdlib root logger (aiohttp, asyncpg) to emit the same format."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=_colours_wanted())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)

    numeric_level = logging.getLevelName(level.upper())
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service)

    # Library loggers (aiohttp.access is disabled: the request middleware logs one line per request).
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(numeric_level, logging.INFO) if isinstance(numeric_level, int) else logging.INFO)
    logging.getLogger("aiohttp.access").disabled = True
