"""``tether-broker audit keygen | reveal``: the key that opens sealed hidden input.

``keygen`` makes an X25519 key pair on the auditor's machine: the private
half is written 0600 and never goes near the broker; the broker is given the
public half (``serve --reveal-key FILE``) and seals input typed while the
customer's terminal hid it to that key (:mod:`tether.protocol.sealed`).

``reveal`` opens the sealed hidden input of an export bundle offline. Whoever
holds the private key can read every password typed in every session sealed
to it, and nothing of that reading reaches the broker's log: keeping the key
offline (and split between people) is the deployment's control, not ours.
With ``--key-fingerprint`` the bundle is verified first, so what is shown is
what the broker sealed into its log.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ...protocol import sealed
from ...protocol.errors import ProtocolError
from .archive import Members, Readable
from .verify import VerifyFailed, read_manifest, with_bundle

PRIVATE_FILE = "reveal-key.pem"
PUBLIC_FILE = "reveal-key.pub.pem"
#: a record holds at most one frame (1 MiB), base64 in a JSON line
MAX_RECORD_LINE = 2 << 20


def keygen(out: Path) -> tuple[Path, Path, str]:
    """Write a new key pair into ``out`` (never over an existing one)."""
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    private_pem, public_pem = sealed.new_key_pair()
    private, public = out / PRIVATE_FILE, out / PUBLIC_FILE
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    fd = os.open(public, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(public_pem)
    return private, public, sealed.key_id(sealed.public_from_pem(public_pem))


@dataclass(frozen=True)
class Line:
    """One run of hidden input (a line typed, or all until echo came back)."""

    session: str
    channel: str
    at_us: int  # wall clock of its first frame
    offset_us: int  # since the recording's start (the player's clock)
    data: bytes


def shown(data: bytes) -> str:
    """The input as text an auditor's terminal cannot be steered by (escapes kept visible)."""
    text = data.decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def _files(zf: Members) -> Iterator[tuple[str, str, int | None]]:
    """(session, path, sealed size) of each hidden-input file the bundle's events seal."""
    for n, line in zf.lines("events.jsonl"):
        if b'"recording.sealed"' not in line:
            continue
        try:
            event = json.loads(line)
            detail = event["detail"]
            ok = event["action"] == "recording.sealed" and isinstance(detail, dict)
        except (ValueError, TypeError, KeyError, RecursionError):
            raise VerifyFailed(f"events.jsonl line {n}: not an event") from None
        if ok and detail.get("kind") == sealed.KIND and isinstance(detail.get("path"), str):
            size = detail.get("bytes")
            yield str(event.get("session_id")), detail["path"], (
                size if type(size) is int else None)


def _lines(f: Readable, path: str) -> Iterator[bytes]:
    """The lines of a hidden-input file, streamed, none longer than a record can be."""
    pending = b""
    while block := f.read(1 << 16):
        pending += block
        *whole, pending = pending.split(b"\n")
        yield from whole
        if len(pending) > MAX_RECORD_LINE:
            raise VerifyFailed(f"{path}: a line is longer than any sealed record")
    if pending:
        yield pending


def _runs(zf: Members, session: str, path: str, size: int | None,
          key: X25519PrivateKey) -> list[Line]:
    f = zf.recording(path, size)
    if f is None:
        raise VerifyFailed(f"{path} is missing from the bundle")
    try:
        lines = _lines(f, path)
        try:
            recipient, channel, started_us = sealed.parse_header(next(lines, b""))
        except ProtocolError as exc:
            raise VerifyFailed(f"{path} line 1: {exc.message}") from None
        mine = sealed.key_id(key.public_key())
        if recipient != mine:
            raise VerifyFailed(f"{path} is sealed to the key {recipient}, not to the key you"
                               f" gave ({mine})")
        runs: dict[int, Line] = {}  # by run number, in the order they were typed
        for n, raw in enumerate(lines, 2):
            try:
                rec = sealed.parse_record(raw)
                data = rec.open(key, channel)
            except ProtocolError as exc:
                raise VerifyFailed(f"{path} line {n}: {exc.message}") from None
            run = runs.get(rec.run)
            runs[rec.run] = (Line(session, channel, started_us + rec.us, rec.us, data)
                             if run is None else
                             Line(session, channel, run.at_us, run.offset_us, run.data + data))
    finally:
        f.close()
    return list(runs.values())


def reveal(bundle: Path, key: X25519PrivateKey) -> list[Line]:
    """Every run of sealed hidden input in the bundle, in order."""
    def read(zf: Members) -> list[Line]:
        read_manifest(zf)
        found: list[Line] = []
        for session, path, size in list(_files(zf)):
            found += _runs(zf, session, path, size, key)
        return found
    return with_bundle(bundle, read)


def when(ts_us: int) -> str:
    return (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts_us / 1e6))
            + f".{ts_us // 1000 % 1000:03d} UTC")
