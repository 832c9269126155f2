"""Structured logging: JSON lines for machines, key=value lines for people.

One ``configure`` call at start-up. Lines are rendered by orjson straight to bytes
(``BytesLoggerFactory``), about 14 µs a line. Bound context (repo, commit, cycle id)
travels with each logger.

No credential ever reaches a log line: the last processor before rendering passes
every string of every event (tracebacks included) through :func:`gitsync.redact.redact`,
so a log call written tomorrow cannot leak a token in a URL however it got there.

Libraries log through stdlib ``logging`` (urllib3's connection warnings, say); their
records are rendered by structlog's ``ProcessorFormatter`` through the same
processors, so in JSON mode stderr carries JSON lines only, and redacted ones.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any

import orjson
import structlog

from gitsync.redact import redact

__all__ = ["configure", "fatal"]

_JSON_MODE = False  # how configure() last set up the stream, for fatal()


def redact_event(
    _logger: object, _method: str, event: structlog.types.EventDict
) -> structlog.types.EventDict:
    """A structlog processor: every string value of the event, redacted."""
    return {key: _redacted(value) for key, value in event.items()}


def _redacted(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {key: _redacted(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(item) for item in value]
    # Anything else is rendered by its text anyway (an exception, a Path): render it
    # here, where it can still be redacted.
    return redact(str(value))


def configure(*, json: bool, level: str = "info") -> None:
    """Route structlog (and stdlib logging) to stderr at ``level``."""
    global _JSON_MODE  # noqa: PLW0603 - one stream per process, set once at start-up
    _JSON_MODE = json
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks as text in both modes, so that they are redacted too.
        structlog.processors.format_exc_info,
        redact_event,
    ]
    renderer: structlog.types.Processor
    foreign: structlog.types.Processor
    if json:
        renderer = structlog.processors.JSONRenderer(serializer=orjson.dumps)
        factory: Callable[..., Any] = structlog.BytesLoggerFactory(sys.stderr.buffer)
        foreign = structlog.processors.JSONRenderer(
            serializer=lambda obj, **kw: orjson.dumps(obj, **kw).decode()
        )
    else:
        renderer = foreign = structlog.dev.ConsoleRenderer(colors=False)
        factory = structlog.PrintLoggerFactory(sys.stderr)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, foreign],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries are chatty at debug (urllib3 logs every connection): they speak at
    # warning and up unless gitsync itself was asked for debug.
    root.setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))


def fatal(message: str) -> None:
    """Say why gitsync exits, as the last line on stderr: a JSON log line when the
    stream is JSON (so it stays JSON only), else ``gitsync: <message>``; redacted."""
    if _JSON_MODE:
        structlog.get_logger("gitsync").error("gitsync failed", error=message)
    else:
        sys.stderr.write(f"gitsync: {redact(message)}\n")
