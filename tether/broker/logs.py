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


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.Formatter.converter = time.gmtime
