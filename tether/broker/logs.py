"""Structured logs: one JSON object per line, with session / peer / chan context.

Callers pass context in ``extra={"session": ..., "peer": ..., "chan": ...}``.
Messages are written by our own code and never include a code, password,
token, cookie or secret; untrusted strings are passed through ``repr`` so
CR/LF cannot forge a log line (JSON encoding escapes them as well).
"""

from __future__ import annotations

import json
import logging
import sys
import time

from aiohttp.http_exceptions import HttpProcessingError

CONTEXT = ("session", "peer", "chan", "user", "status", "method", "path", "ms")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in CONTEXT:
            value = record.__dict__.get(key)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


class MalformedRequests(logging.Filter):
    """aiohttp logs a request it cannot parse with a traceback quoting the raw bad
    line, which may be a Cookie or token header. Keep the fact, drop the bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = "malformed request refused (%s)", (type(exc).__name__,)
            record.exc_info = record.exc_text = None
        return True


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(MalformedRequests())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.Formatter.converter = time.gmtime
