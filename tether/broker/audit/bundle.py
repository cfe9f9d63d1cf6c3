"""Self-contained export bundles that anyone can check without the broker.

A bundle is a zip:

* ``manifest.json``: format, what it covers, the audit public key, where the
  run of events starts (``start_seq`` and the chain head before it) and ends,
  which events it carries in full, the exact size of ``events.jsonl`` and
  ``checkpoints.jsonl`` (``files``: the verifier reads no more than that), and
  the audit key's signature over all of that (so no event can be reduced to a
  digest, and the scope cannot be relabelled, without the signature failing);
* ``events.jsonl``: every event from ``start_seq`` to the first checkpoint at
  or after the last selected event; the selected ones (one session's, or a
  date range's) in full, every other one as ``{"seq", "digest"}`` only, which
  the chain allows (DESIGN.md: each link hashes the event's digest);
* ``checkpoints.jsonl``: the signed checkpoints over that run;
* ``recordings/...``: every recording sealed by an event carried in full.

``tether-broker audit verify --bundle FILE --key-fingerprint FP`` checks it
(:func:`.verify.verify_bundle`). The start head needs no signature: a
checkpoint's head commits to it and to every event after it.

Synchronous: runs in a worker thread on its own read-only connection, writing
straight to a file, so a large range never sits in memory.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import zipfile
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from ...protocol.canon import row_canon
from ...protocol.errors import Conflict, NotFound
from .log import event_dict
from .verify import BUNDLE_FORMAT, safe_recording_path, statement_bytes

_COLUMNS = "seq, ts_us, session_id, actor, action, ip, detail, prev_hash"


def write_bundle(data: Path, out: Path, key: ed25519.Ed25519PrivateKey, *,
                 session_id: str | None = None, since_us: int | None = None,
                 until_us: int | None = None) -> dict[str, Any]:
    """Write the bundle for one session, or for events in [since_us, until_us)."""
    params: tuple[Any, ...]
    if session_id is not None:
        where, params = "session_id = ?", (session_id,)
        scope: dict[str, Any] = {"session": session_id}

        def wanted(row: sqlite3.Row) -> bool:
            return bool(row["session_id"] == session_id)
    else:
        lo, hi = since_us or 0, until_us or 2**62
        where, params = "ts_us >= ? AND ts_us < ?", (lo, hi)
        scope = {"since_us": lo, "until_us": hi}

        def wanted(row: sqlite3.Row) -> bool:
            return bool(lo <= row["ts_us"] < hi)

    db = sqlite3.connect(f"file:{data / 'tether.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        first, last = db.execute(
            f"SELECT MIN(seq), MAX(seq) FROM audit_events WHERE {where}", params  # noqa: S608
        ).fetchone()
        if first is None:
            raise NotFound("no events to export")
        (end,) = db.execute("SELECT MIN(seq) FROM audit_checkpoints WHERE seq >= ?",
                            (last,)).fetchone()
        if end is None:
            raise Conflict(f"no signed checkpoint covers event {last} yet")
        start_head = db.execute("SELECT prev_hash FROM audit_events WHERE seq = ?",
                                (first,)).fetchone()[0]
        raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
        manifest: dict[str, Any] = {
            "format": BUNDLE_FORMAT, "version": 1, "scope": scope, "public_key": raw.hex(),
            "start_seq": first, "start_head": bytes(start_head).hex(), "end_seq": end}
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            files: dict[str, int] = {"events.jsonl": 0, "checkpoints.jsonl": 0}
            with zf.open("checkpoints.jsonl", "w") as f:
                for (line,) in db.execute("SELECT line FROM audit_checkpoints WHERE seq"
                                          " BETWEEN ? AND ? ORDER BY seq", (first, end)):
                    files["checkpoints.jsonl"] += f.write(line.encode() + b"\n")
            recordings: dict[str, bool] = {}
            full: list[int] = []
            with zf.open("events.jsonl", "w") as f:
                rows = db.execute(f"SELECT {_COLUMNS} FROM audit_events"  # noqa: S608
                                  " WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, end))
                for row in rows:
                    files["events.jsonl"] += f.write(
                        _line(row, wanted(row), recordings) + b"\n")
                    if wanted(row):
                        full.append(row["seq"])
            _add_recordings(zf, data, recordings)
            manifest["full"] = full
            manifest["files"] = files
            manifest["signature"] = key.sign(statement_bytes(manifest)).hex()
            zf.writestr("manifest.json", json.dumps(manifest, indent=1))
    finally:
        db.close()
    return {**manifest, "events": end - first + 1, "full": len(full)}


def _line(row: sqlite3.Row, full: bool, recordings: dict[str, bool]) -> bytes:
    if not full:
        digest = hashlib.sha256(row_canon(row["seq"], row["ts_us"], row["session_id"],
                                          row["actor"], row["action"], row["ip"],
                                          row["detail"])).hexdigest()
        return json.dumps({"seq": row["seq"], "digest": digest}).encode()
    event = event_dict(dict(row))
    if event["action"] in ("recording.sealed", "recording.purged"):
        path = event["detail"].get("path")
        if isinstance(path, str):
            recordings[path] = event["action"] == "recording.sealed"
    return json.dumps(event, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def _add_recordings(zf: zipfile.ZipFile, data: Path, recordings: dict[str, bool]) -> None:
    for path, present in recordings.items():
        src = data / path
        if (present and safe_recording_path(path) and src.is_file()
                and data.resolve() in src.resolve().parents):  # no symlink out either
            zf.write(src, path)

