"""Structured JSON logs carrying the current request id.

The request id lives in a context variable set by the HTTP middleware (and by WebSocket handlers
and event consumers for their own units of work), so every log line of one request can be found
together. Secrets are never passed to loggers; the formatter adds no request bodies or headers.
"""

from __future__ import annotations

import logging
import sys
from contextvars import ContextVar

from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure(level: str = "INFO") -> None:
    """Send the ``verseflow`` loggers to stderr as JSON lines; idempotent."""
    logger = logging.getLogger("verseflow")
    if any(getattr(h, "_verseflow", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._verseflow = True  # type: ignore[attr-defined]
    handler.addFilter(_RequestIdFilter())
    handler.setFormatter(
        JsonFormatter("{asctime}{levelname}{name}{message}{request_id}", style="{",
                      rename_fields={"asctime": "ts", "levelname": "level", "name": "logger"})
    )
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"verseflow.{name}")
