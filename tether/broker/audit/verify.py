"""``tether-broker audit verify``: prove the log and the recordings are intact.

Two sources, one walk:

* a data directory: every event in ``tether.db`` (stored ``prev_hash``/``hash``
  checked too), the checkpoints in the database *and* in
  ``audit-checkpoints.jsonl``, every sealed recording under ``recordings/``;
* an export bundle (see :mod:`.bundle`): a zip holding a run of events (in
  full, or as their digest only), the checkpoints over it and the recordings,
  checked against a key fingerprint the auditor already trusts, never a key
  taken on the bundle's word alone. The zip itself is hostile input
  (:mod:`.archive`): duplicate, unsafe or unaccounted-for members and
  oversized or over-compressed ones are refused before anything is believed.

The walk recomputes the chain event by event; each checkpoint must carry a
valid signature and the head the walk reaches at its ``seq``; a checkpoint
beyond the last event means events were deleted from the end. Every sealed
recording must exist with its sealed sha256 (and, in a bundle, its sealed
size), unless a later ``recording.purged`` event says retention removed it;
the sealed hidden input beside a recording (``<channel>.hidden.jsonl``) is
sealed and checked the same way. The first problem stops
the walk and is reported as ``FAILED: <where>: <why>``.

Synchronous on purpose: it runs from the command line or in a worker thread.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519

from ...protocol import sealed
from ...protocol.canon import GENESIS, canon, chain, event_digest, row_canon
from ...protocol.checkpoint import Checkpoint, key_fingerprint
from .archive import Members, Readable, UnsafeBundle
from .checkpoints import CHECKPOINT_FILE

T = TypeVar("T")
BUNDLE_FORMAT = "tether-audit-bundle"
STATEMENT_TYPE = "tether.bundle.v1"
EVENT_KEYS = frozenset({"seq", "ts_us", "session_id", "actor", "action", "ip", "detail"})


class VerifyFailed(Exception):
    """The first thing that does not check out, as one line for a person."""


@dataclass
class Report:
    events: int = 0
    checkpoints: int = 0
    recordings: int = 0
    hidden: int = 0  # sealed hidden-input files (beside recordings)
    purged: int = 0
    full: int = 0  # bundles: events carried in full (the rest as digests)
    first_seq: int = 0
    unsigned: int = 0  # events after the last checkpoint
    scope: str = ""  # bundles: what the bundle says it covers
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        hidden = f", {self.hidden} sealed hidden-input files" if self.hidden else ""
        return (f"OK: {self.events} events, {self.checkpoints} checkpoints,"
                f" {self.recordings} recordings{hidden}")


def when(ts_us: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts_us / 1e6))


def parse_checkpoints(lines: Iterable[tuple[str, str | bytes]],
                      public_key: ed25519.Ed25519PublicKey) -> dict[int, Checkpoint]:
    """Checkpoints by seq from (where, line) pairs; every one must be valid."""
    found: dict[int, Checkpoint] = {}
    for where, line in lines:
        try:
            cp = Checkpoint.from_json(line)
        except ValueError as exc:
            raise VerifyFailed(f"{where}: {exc}") from None
        if found.get(cp.seq) == cp:
            continue  # the same checkpoint in the database and the file: checked once
        problem = cp.problem(public_key)
        if problem:
            raise VerifyFailed(f"checkpoint at event {cp.seq} ({where}): {problem}")
        other = found.setdefault(cp.seq, cp)
        if other.head != cp.head:
            raise VerifyFailed(f"two checkpoints at event {cp.seq} sign different heads")
    return found


class Walk:
    """Recompute the chain from (seq, head), checking checkpoints on the way."""

    def __init__(self, checkpoints: dict[int, Checkpoint], seq: int = 0,
                 head: bytes = GENESIS) -> None:
        self.checkpoints = checkpoints
        self.seq, self.head = seq, head
        self.first = seq + 1
        self.sealed: dict[str, Sealed] = {}  # by recording path
        self.purged: set[str] = set()
        self.channels: set[str] = set()  # channels with a seal or purge carried in full

    def step(self, seq: int, digest: bytes, stored: tuple[bytes, bytes] | None = None) -> None:
        expected = self.seq + 1
        if seq != expected:
            where = f"event {expected}" if seq > expected else f"event {seq}"
            raise VerifyFailed(f"{where}: missing or out of order (found event {seq} next)")
        if stored and stored[0] != self.head:
            raise VerifyFailed(f"event {seq}: prev_hash does not match the chain")
        self.seq, self.head = seq, chain(self.head, digest)
        if stored and stored[1] != self.head:
            raise VerifyFailed(f"event {seq}: contents do not match its hash")
        cp = self.checkpoints.get(seq)
        if cp and cp.head != self.head.hex():
            raise VerifyFailed(
                f"event {seq}: the log up to here does not match the checkpoint signed"
                f" {when(cp.ts_us)}: events were changed, removed or reordered")

    def note_recording(self, seq: int, action: str, detail: dict[str, Any]) -> None:
        path = detail.get("path")
        if not isinstance(path, str) or action not in ("recording.sealed", "recording.purged"):
            return
        self.channels.add(str(detail.get("channel")))
        if action == "recording.sealed":
            size = detail.get("bytes")
            self.sealed[path] = Sealed(seq, str(detail.get("sha256")),
                                       size if type(size) is int else None,
                                       detail.get("kind") == sealed.KIND)
        else:
            self.purged.add(path)

    def finish(self, report: Report) -> None:
        beyond = [cp for cp in self.checkpoints.values() if cp.seq > self.seq]
        if beyond:
            cp = min(beyond, key=lambda c: c.seq)
            raise VerifyFailed(
                f"the log ends at event {self.seq} but a checkpoint signed {when(cp.ts_us)}"
                f" covers events up to {cp.seq}: events were deleted from the end")
        before = [cp for cp in self.checkpoints.values() if cp.seq < self.first]
        if before:
            raise VerifyFailed(f"checkpoint at event {before[0].seq} is outside the events")
        report.events = self.seq - self.first + 1
        report.first_seq = self.first
        report.checkpoints = len(self.checkpoints)
        report.unsigned = self.seq - max(self.checkpoints, default=self.first - 1)

    def present(self) -> set[str]:
        """The recordings the log says exist (sealed, not purged since)."""
        return set(self.sealed) - self.purged

    def check_recordings(self, report: Report,
                         read: Callable[[str, int | None], Readable | None]) -> None:
        for path, rec in sorted(self.sealed.items(), key=lambda kv: kv[1].seq):
            seq = rec.seq
            if path in self.purged:
                report.purged += 1
                continue
            if not safe_recording_path(path):
                raise VerifyFailed(f"event {seq}: recording path {path!r} is not allowed")
            f = read(path, rec.bytes)
            if f is None:
                raise VerifyFailed(f"event {seq}: recording {path} is missing")
            try:
                digest = hashlib.sha256()
                while block := f.read(1 << 20):
                    digest.update(block)
            finally:
                f.close()
            if digest.hexdigest() != rec.sha256:
                raise VerifyFailed(f"event {seq}: recording {path} was altered"
                                   " (its sha256 differs from the sealed one)")
            if rec.hidden:
                report.hidden += 1
            else:
                report.recordings += 1


@dataclass(frozen=True)
class Sealed:
    """What a ``recording.sealed`` event says of a file."""

    seq: int
    sha256: str
    bytes: int | None
    hidden: bool  # the sealed hidden input beside a recording


def safe_recording_path(path: str) -> bool:
    """A recording path as the log stores it: relative, under ``recordings/``, no ``..``."""
    p = PurePosixPath(path)
    return not p.is_absolute() and ".." not in p.parts and p.parts[:1] == ("recordings",)


def _detail(text: str, seq: int) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise VerifyFailed(f"event {seq}: detail is not JSON") from None
    return obj if isinstance(obj, dict) else {}


# --- a data directory ----------------------------------------------------------


def verify_data(data: Path, public_key: ed25519.Ed25519PublicKey) -> Report:
    report = Report()
    db = sqlite3.connect(f"file:{data / 'tether.db'}?mode=ro", uri=True)
    try:
        lines: list[tuple[str, str | bytes]] = [
            (f"database checkpoint {seq}", line)
            for seq, line in db.execute("SELECT seq, line FROM audit_checkpoints")
        ]
        in_db = len(lines)
        journal = data / CHECKPOINT_FILE
        if journal.exists():
            with journal.open("rb") as f:
                lines += [(f"{CHECKPOINT_FILE} line {n}", line)
                          for n, line in enumerate(f, 1) if line.strip()]
        elif in_db:
            report.notes.append(f"{CHECKPOINT_FILE} is missing")
        checkpoints = parse_checkpoints(lines, public_key)
        walk = Walk(checkpoints)
        rows = db.execute("SELECT seq, ts_us, session_id, actor, action, ip, detail,"
                          " prev_hash, hash FROM audit_events ORDER BY seq")
        for row in rows:
            seq, ts_us, session_id, actor, action, ip, detail, prev, stored = row
            if not _well_typed(row):
                raise VerifyFailed(f"event {seq}: a column holds a value of the wrong type")
            digest = hashlib.sha256(
                row_canon(seq, ts_us, session_id, actor, action, ip, detail)).digest()
            walk.step(seq, digest, (prev, stored))
            if action in ("recording.sealed", "recording.purged"):
                walk.note_recording(seq, action, _detail(detail, seq))
    finally:
        db.close()
    walk.finish(report)
    walk.check_recordings(report, lambda p, _size: _open_file(data / p))
    return report


_STR, _OPT = (str,), (str, type(None))
_ROW_TYPES = ((int,), (int,), _OPT, _STR, _STR, _OPT, _STR, (bytes,), (bytes,))


def _well_typed(row: tuple[Any, ...]) -> bool:
    """SQLite keeps any type in any column; the chain is defined over these."""
    return all(type(v) in kinds for v, kinds in zip(row, _ROW_TYPES, strict=True))


def _open_file(path: Path) -> Readable | None:
    try:
        return path.open("rb") if path.is_file() else None
    except OSError:
        return None


# --- an export bundle ----------------------------------------------------------


def verify_bundle(file: Path, fingerprint: str) -> Report:
    return with_bundle(file, lambda zf: _verify_zip(zf, fingerprint))


def with_bundle(file: Path, fn: Callable[[Members], T]) -> T:
    """``fn`` of the bundle's checked members; any problem with the zip is VerifyFailed."""
    try:
        with zipfile.ZipFile(file) as zf:
            return fn(Members(zf))
    except UnsafeBundle as exc:
        raise VerifyFailed(str(exc)) from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error, NotImplementedError) as exc:
        raise VerifyFailed(f"{file.name} is not a readable Tether export bundle"
                           f" ({exc.__class__.__name__}: {exc})") from None


def _verify_zip(zf: Members, fingerprint: str) -> Report:
    report = Report()
    manifest = read_manifest(zf)
    try:
        public_key = ed25519.Ed25519PublicKey.from_public_bytes(
            bytes.fromhex(manifest["public_key"]))
    except ValueError:
        raise VerifyFailed("the bundle's public key is malformed") from None
    actual = key_fingerprint(public_key)
    if actual != fingerprint.strip():
        raise VerifyFailed(f"the bundle is signed by the key {actual}, not by the key"
                           f" {fingerprint.strip()} you trust")
    try:
        public_key.verify(bytes.fromhex(manifest["signature"]), statement_bytes(manifest))
    except (InvalidSignature, ValueError):
        raise VerifyFailed("manifest.json was changed after the export (its signature does"
                           " not verify with the audit key)") from None
    in_full = set(manifest["full"])
    sizes = manifest.get("files", {})  # signed: bundles exported before it have none
    checkpoints = parse_checkpoints(
        ((f"checkpoints.jsonl line {n}", line)
         for n, line in _lines(zf, "checkpoints.jsonl", sizes.get("checkpoints.jsonl"))),
        public_key)
    if not checkpoints:
        raise VerifyFailed("the bundle carries no signed checkpoint")
    session = manifest["scope"].get("session")
    walk = Walk(checkpoints, manifest["start_seq"] - 1, bytes.fromhex(manifest["start_head"]))
    promised: dict[str, int] = {}  # channel -> seq of the session.ended that lists it
    for n, line in _lines(zf, "events.jsonl", sizes.get("events.jsonl")):
        seq, digest, event = _bundle_event(line, n)
        walk.step(seq, digest)
        if (event is not None) != (seq in in_full):
            shown = "in full" if event else "as a digest only"
            raise VerifyFailed(f"event {seq}: carried {shown}, unlike in the signed export")
        if event:
            report.full += 1
            walk.note_recording(seq, event["action"], event["detail"])
            if event["action"] == "session.ended" and event["session_id"] == session:
                promised |= {str(c): seq for c in event["detail"].get("recordings", [])}
    walk.finish(report)
    if report.unsigned:
        raise VerifyFailed(f"the last {report.unsigned} events are not covered by a"
                           " signed checkpoint (the bundle was cut short)")
    if walk.seq != manifest["end_seq"]:
        raise VerifyFailed(f"the bundle ends at event {walk.seq} but its manifest says"
                           f" {manifest['end_seq']}: events were cut from the end")
    for channel, seq in promised.items():
        if channel not in walk.channels:
            raise VerifyFailed(f"event {seq}: the session ended with a recording of channel"
                               f" {channel} that the bundle does not carry in full")
    zf.only(walk.present())  # nothing the signed events do not account for
    walk.check_recordings(report, zf.recording)
    report.scope = f"session {session}" if session else (
        f"{when(manifest['scope']['since_us'])} to {when(manifest['scope']['until_us'])}")
    return report


def statement_bytes(manifest: dict[str, Any]) -> bytes:
    """What the audit key signs for a bundle: the whole manifest but its signature,
    including which events it carries in full, so none can be turned into a digest."""
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return canon({**body, "type": STATEMENT_TYPE})


def read_manifest(zf: Members) -> dict[str, Any]:
    try:
        manifest = json.loads(zf.read_json("manifest.json"))
        scope = manifest.get("scope")
        ok = (manifest.get("format") == BUNDLE_FORMAT and manifest.get("version") == 1
              and type(manifest.get("start_seq")) is int and manifest["start_seq"] >= 1
              and type(manifest.get("end_seq")) is int
              and isinstance(manifest.get("signature"), str)
              and isinstance(manifest.get("full"), list)
              and all(type(n) is int for n in manifest["full"])
              and isinstance(scope, dict) and (
                  isinstance(scope.get("session"), str)
                  or (type(scope.get("since_us")) is int and type(scope.get("until_us")) is int))
              and _sizes(manifest.get("files", {}))
              and isinstance(manifest.get("start_head"), str)
              and len(manifest["start_head"]) == 64 and isinstance(manifest.get("public_key"),
                                                                   str))
        bytes.fromhex(manifest["start_head"])
    except (KeyError, ValueError, AttributeError, TypeError, RecursionError):
        ok = False
    if not ok:
        raise VerifyFailed("manifest.json is missing or not a Tether bundle manifest")
    return dict(manifest)


def _sizes(files: object) -> bool:
    """The manifest's ``files``: the JSON-lines members' exact sizes."""
    return isinstance(files, dict) and all(
        name in ("events.jsonl", "checkpoints.jsonl") and type(n) is int and n >= 0
        for name, n in files.items())


def _lines(zf: Members, name: str, size: int | None) -> Iterable[tuple[int, bytes]]:
    try:
        yield from zf.lines(name, size)
    except KeyError:
        raise VerifyFailed(f"{name} is missing from the bundle") from None


def _bundle_event(line: bytes, n: int) -> tuple[int, bytes, dict[str, Any] | None]:
    """(seq, digest, the event if carried in full) of one events.jsonl line."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):  # nesting deep enough to exhaust the stack too
        raise VerifyFailed(f"events.jsonl line {n}: not JSON") from None
    if isinstance(obj, dict) and set(obj) == {"seq", "digest"} and type(obj["seq"]) is int:
        try:
            digest = bytes.fromhex(obj["digest"])
        except (TypeError, ValueError):
            digest = b""
        if len(digest) == 32:
            return obj["seq"], digest, None
    elif (isinstance(obj, dict) and set(obj) == EVENT_KEYS and type(obj["seq"]) is int
          and isinstance(obj["detail"], dict) and isinstance(obj["action"], str)):
        try:
            return obj["seq"], event_digest(obj), obj
        except (TypeError, ValueError, RecursionError):
            pass
    raise VerifyFailed(f"events.jsonl line {n}: not an event")

