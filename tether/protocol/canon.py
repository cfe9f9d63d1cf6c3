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
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode()


def event_digest(event: dict[str, Any]) -> bytes:
    return hashlib.sha256(canon(event)).digest()


def chain(prev_hash: bytes, digest: bytes) -> bytes:
    return hashlib.sha256(prev_hash + digest).digest()


try:
    from _json import encode_basestring as _string  # what json.dumps uses, ensure_ascii=False
except ImportError:  # pragma: no cover - pure-Python json
    from json.encoder import py_encode_basestring as _string


def _opt(value: str | None) -> str:
    return "null" if value is None else _string(value)


def row_canon(seq: int, ts_us: int, session_id: str | None, actor: str, action: str,
              ip: str | None, detail: str) -> bytes:
    """``canon`` of a stored event whose ``detail`` is already canonical JSON text.

    The same bytes as ``canon(event)`` with ``detail`` parsed, without parsing
    it: this is what lets ``audit verify`` check a million events in seconds.
    A ``detail`` that is not canonical gives other bytes, so it fails its hash.
    """
    return (
        f'{{"action":{_string(action)},"actor":{_string(actor)},"detail":{detail},'
        f'"ip":{_opt(ip)},"seq":{int(seq)},"session_id":{_opt(session_id)},'
        f'"ts_us":{int(ts_us)}}}'
    ).encode()
