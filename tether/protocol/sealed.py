"""Sealed boxes: input typed while the customer's terminal hid it, readable only offline.

An auditor makes an X25519 key pair anywhere (``tether-broker audit keygen``)
and gives the broker the public half only. Each record of hidden input is an
*anonymous sealed box* to that key: a fresh ephemeral X25519 key per box, the
shared secret stretched by HKDF-SHA256 into a one-use ChaCha20-Poly1305 key
(so the all-zero nonce is never reused under a key). The broker can write
boxes but never read them; whoever holds the private half can read every box
sealed to it, anywhere, without the broker and without it being logged.

A box is bytes (base64 in files)::

    VERSION (1 byte) | recipient id (32: sha256 of the raw public key)
    | ephemeral public key (32) | ciphertext + tag (len(plaintext) + 16)

The header and a caller's ``context`` are the associated data, so a box moved
to another place (another record number, channel or time) no longer opens.

The hidden-input file beside a recording (``<channel>.hidden.jsonl``) is one
:func:`file_header` line, then one :func:`record_line` per box. Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .canon import canon
from .errors import ProtocolError

TYPE = "tether.sealed.v1"
FILE_TYPE = "tether.hidden-input.v1"
#: the ``kind`` of the ``recording.sealed`` event that seals a hidden-input file
KIND = "hidden-input"
VERSION = 1
_ID, _KEY, _TAG = 32, 32, 16
_HEADER = 1 + _ID + _KEY
_NONCE = bytes(12)  # each box has its own key: a fixed nonce is never reused under a key
#: a hidden-input record holds one frame of input; frames are at most 1 MiB
MAX_PLAINTEXT = 1 << 20


def _raw(public: X25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public: X25519PublicKey) -> str:
    """``SHA256:<hex>`` of the raw public key, as the audit key's fingerprint is shown."""
    return "SHA256:" + hashlib.sha256(_raw(public)).hexdigest()


def _box_key(shared: bytes, ephemeral: bytes, recipient: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=ephemeral + recipient,
                info=TYPE.encode()).derive(shared)


def seal(recipient: X25519PublicKey, plaintext: bytes, context: bytes = b"") -> bytes:
    """A box only ``recipient``'s private key opens (with the same ``context``)."""
    if len(plaintext) > MAX_PLAINTEXT:
        raise ValueError("too much to seal in one box")
    ephemeral = X25519PrivateKey.generate()
    epk, rpk = _raw(ephemeral.public_key()), _raw(recipient)
    key = _box_key(ephemeral.exchange(recipient), epk, rpk)
    header = bytes([VERSION]) + hashlib.sha256(rpk).digest() + epk
    return header + ChaCha20Poly1305(key).encrypt(_NONCE, plaintext, header + context)


def recipient_of(box: bytes) -> str:
    """The key id a box is sealed to (no key needed)."""
    if len(box) < _HEADER + _TAG or box[0] != VERSION:
        raise ProtocolError("not a sealed box of a known version")
    return "SHA256:" + box[1:1 + _ID].hex()


def open_box(private: X25519PrivateKey, box: bytes, context: bytes = b"") -> bytes:
    """The plaintext; :class:`ProtocolError` for another key or any change to the box."""
    to = recipient_of(box)
    public = private.public_key()
    if to != key_id(public):
        raise ProtocolError(f"sealed to the key {to}, not to {key_id(public)}")
    epk = box[1 + _ID:_HEADER]
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(epk))
        key = _box_key(shared, epk, _raw(public))
        return ChaCha20Poly1305(key).decrypt(_NONCE, box[_HEADER:], box[:_HEADER] + context)
    except (InvalidTag, ValueError) as exc:
        raise ProtocolError("the sealed box was altered (it does not authenticate)") from exc


# --- keys as files -----------------------------------------------------------------------


def new_key_pair() -> tuple[bytes, bytes]:
    """(private PEM, public PEM) of a fresh X25519 key pair."""
    private = X25519PrivateKey.generate()
    return (private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()),
            private.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))


def public_from_pem(data: bytes) -> X25519PublicKey:
    """The reveal key as the broker is given it; a private key is refused outright."""
    if b"PRIVATE KEY" in data:
        raise ProtocolError("this is a private key: give the broker only the public half")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ProtocolError("not a PEM public key") from exc
    if not isinstance(key, X25519PublicKey):
        raise ProtocolError("not an X25519 public key")
    return key


def private_from_pem(data: bytes) -> X25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ProtocolError("not an unencrypted PEM private key") from exc
    if not isinstance(key, X25519PrivateKey):
        raise ProtocolError("not an X25519 private key")
    return key


# --- the hidden-input file ------------------------------------------------------------------


def file_header(recipient: str, channel: str, started_us: int) -> bytes:
    """The first line: what the file is, whose key opens it, which channel, time zero."""
    return canon({"type": FILE_TYPE, "recipient": recipient, "channel": channel,
                  "started_us": started_us}) + b"\n"


def _context(channel: str, n: int, run: int, us: int) -> bytes:
    return canon({"channel": channel, "n": n, "run": run, "us": us})


@dataclass(frozen=True)
class Record:
    """One frame of hidden input: its number, its run (one line typed), when, its box."""

    n: int
    run: int
    us: int  # microseconds since the recording's time zero
    box: bytes

    def open(self, private: X25519PrivateKey, channel: str) -> bytes:
        return open_box(private, self.box, _context(channel, self.n, self.run, self.us))


def record_line(recipient: X25519PublicKey, channel: str, n: int, run: int, us: int,
                data: bytes) -> bytes:
    box = seal(recipient, data, _context(channel, n, run, us))
    return canon({"n": n, "run": run, "us": us,
                  "box": base64.b64encode(box).decode()}) + b"\n"


def _obj(line: bytes, keys: set[str]) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("not JSON") from exc
    if not isinstance(obj, dict) or set(obj) != keys:
        raise ProtocolError("unexpected fields")
    return obj


def parse_header(line: bytes) -> tuple[str, str, int]:
    """(recipient id, channel, started_us) of a hidden-input file's first line."""
    obj = _obj(line, {"type", "recipient", "channel", "started_us"})
    if (obj["type"] != FILE_TYPE or not isinstance(obj["recipient"], str)
            or not isinstance(obj["channel"], str) or type(obj["started_us"]) is not int):
        raise ProtocolError(f"not a {FILE_TYPE} file")
    return obj["recipient"], obj["channel"], obj["started_us"]


def parse_record(line: bytes) -> Record:
    obj = _obj(line, {"n", "run", "us", "box"})
    if not all(type(obj[k]) is int and obj[k] >= 0 for k in ("n", "run", "us")) or not (
            isinstance(obj["box"], str)):
        raise ProtocolError("not a hidden-input record")
    try:
        box = base64.b64decode(obj["box"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError("the box is not base64") from exc
    return Record(obj["n"], obj["run"], obj["us"], box)
