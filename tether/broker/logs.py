"""Structured logs: one JSON object per line, with session / peer / chan context.

Callers pass context in ``extra={"session": ..., "peer": ..., "chan": ...}``.
Messages are written by our own code and never include a code, password,
token, cookie or secret; untrusted strings are passed through ``repr`` so
CR/LF cannot forge a log line (JSON encoding escapes them as well).

Repeats are collapsed (:class:`Repeats`): a peer that makes the broker say the
same thing thousands of times a second (a flood of late decisions, refused
hellos, requests) gets a few lines per window, and the next line that passes
says how many similar ones were left out, so ``broker.log`` grows with time,
not with what an attacker sends.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from aiohttp.http_exceptions import HttpProcessingError

CONTEXT = ("session", "peer", "chan", "user", "status", "method", "path", "ms", "suppressed")
#: lines per key per window before repeats are collapsed
REPEAT_BURST = 20
REPEAT_WINDOW = 10.0
#: context that tells lines with the same message apart
SIMILAR = ("peer", "session", "chan", "path", "status")
#: keys remembered at most (beyond that the oldest windows are dropped early)
REPEAT_KEYS = 10_000


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


class Repeats(logging.Filter):
    """At most ``burst`` lines per key and ``window`` seconds; the rest are counted.

    The key is what makes lines "similar": the logger, the level, the message
    before its arguments are filled in, and the context in :data:`SIMILAR` (the
    peer and session it is about; for the access log the path and status too, so
    a user's page loads are never collapsed, a peer's thousand hellos are).
    The first line of a key's next window carries ``suppressed``: how many were
    left out of the one before. Warnings and errors are collapsed the same way
    (an attacker can provoke those too); the count keeps the fact.
    """

    def __init__(self, burst: int = REPEAT_BURST, window: float = REPEAT_WINDOW,
                 max_keys: int = REPEAT_KEYS) -> None:
        super().__init__()
        self.burst, self.window, self.max_keys = burst, window, max_keys
        self._seen: dict[tuple[object, ...], list[float]] = {}  # key -> [start, shown, hidden]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg),
               *(record.__dict__.get(k) for k in SIMILAR))
        now = time.monotonic()
        seen = self._seen.get(key)
        if seen is None or now - seen[0] >= self.window:
            hidden = int(seen[2]) if seen else 0
            self._seen.pop(key, None)
            self._seen[key] = [now, 1, 0]
            self._trim(now)
            if hidden:
                record.suppressed = f"{hidden} similar suppressed"
            return True
        if seen[1] < self.burst:
            seen[1] += 1
            return True
        seen[2] += 1
        return False

    def _trim(self, now: float) -> None:
        while len(self._seen) > self.max_keys:
            del self._seen[next(iter(self._seen))]
        first = next(iter(self._seen.items()), None)  # oldest window first
        while first is not None and now - first[1][0] >= self.window and not first[1][2]:
            del self._seen[first[0]]
            first = next(iter(self._seen.items()), None)


def setup(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(MalformedRequests())
    handler.addFilter(Repeats())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.Formatter.converter = time.gmtime
