"""Canonical JSON and the audit hash chain (DESIGN.md, "Audit and recordings").

``canon(e)`` is the event without ``hash``/``prev_hash`` as UTF-8 JSON with
sorted keys and no whitespace; timestamps are integer microseconds.
``hash = sha256(prev_hash || sha256(canon(e)))``, the first ``prev_hash``
being 32 zero bytes. Chaining the event's *digest* lets an export carry other
sessions' events as digests only and still verify.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

GENESIS = bytes(32)


def canon(event: dict[str, Any]) -> bytes:
    body = {k: v for k, v in event.items() if k not in ("hash", "prev_hash")}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def event_digest(event: dict[str, Any]) -> bytes:
    return hashlib.sha256(canon(event)).digest()


def chain(prev_hash: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(prev_hash + digest).digest()
