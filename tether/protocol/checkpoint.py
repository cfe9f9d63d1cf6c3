"""Signed checkpoints of the audit chain (DESIGN.md, "Audit and recordings").

A checkpoint says "after event ``seq`` the chain head was ``head``", signed
with the broker's Ed25519 audit key. Whoever holds a checkpoint and trusts the
key's fingerprint can check every event up to ``seq``; events deleted from the
end of the log no longer reach a signed head.

The signed bytes are the canonical JSON of every field but ``sig``, with a
``type`` naming the format, so a signature cannot be replayed as anything else.
Pure: no I/O here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from .canon import canon

TYPE = "tether.checkpoint.v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX128 = re.compile(r"[0-9a-f]{128}")
_FIELDS = {"seq": int, "head": str, "ts_us": int, "reason": str, "key": str, "sig": str}


def key_fingerprint(public_key: ed25519.Ed25519PublicKey) -> str:
    """``SHA256:<hex>`` of the raw 32-byte public key (what ``init`` prints)."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "SHA256:" + hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    seq: int
    head: str  # hex
    ts_us: int
    reason: str
    key: str  # fingerprint of the signing key
    sig: str = ""  # hex

    def signed_bytes(self) -> bytes:
        body = {k: v for k, v in asdict(self).items() if k != "sig"}
        return canon({**body, "type": TYPE})

    @classmethod
    def make(cls, key: ed25519.Ed25519PrivateKey, seq: int, head: bytes, ts_us: int,
             reason: str) -> Checkpoint:
        unsigned = cls(seq, head.hex(), ts_us, reason, key_fingerprint(key.public_key()))
        return cls(**{**asdict(unsigned), "sig": key.sign(unsigned.signed_bytes()).hex()})

    def problem(self, public_key: ed25519.Ed25519PublicKey) -> str | None:
        """Why this checkpoint is not a valid signature by ``public_key``, or None."""
        fp = key_fingerprint(public_key)
        if self.key != fp:
            return f"signed by another key ({self.key}), not the audit key {fp}"
        try:
            public_key.verify(bytes.fromhex(self.sig), self.signed_bytes())
        except (InvalidSignature, ValueError):
            return f"its signature does not verify with the audit key {fp}"
        return None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> Checkpoint:
        """Parse one checkpoint line strictly; ``ValueError`` says what is wrong."""
        try:
            obj: Any = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ValueError("not JSON") from exc
        if not isinstance(obj, dict) or set(obj) != set(_FIELDS):
            raise ValueError("not a checkpoint (wrong fields)")
        for name, kind in _FIELDS.items():
            if type(obj[name]) is not kind:
                raise ValueError(f"field {name!r} has the wrong type")
        if obj["seq"] < 1 or obj["seq"] >= 2**63:
            raise ValueError("seq out of range")
        if not _HEX64.fullmatch(obj["head"]):
            raise ValueError("head is not 64 lowercase hex digits")
        if not _HEX128.fullmatch(obj["sig"]):
            raise ValueError("sig is not 128 lowercase hex digits")
        return cls(**obj)
