"""``tether-broker audit verify --data DIR`` on a real data directory, tampered with by hand.

The data directory is made by ``tether-broker init``; its events are written by
the real :class:`AuditLog` with the real audit key (a checkpoint every 5
events), and one real recording is sealed the way the core seals it. Each test
then does to the files what someone with access to the machine could do
(``sqlite3``, an editor, ``rm``) and runs the command an auditor would run.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.helpers import run_cli
from tether.broker.audit.log import AuditLog
from tether.broker.certs import AUDIT_KEY, load_audit_key
from tether.broker.cli import main
from tether.broker.store.sqlite import Store
from tether.protocol.canon import GENESIS
from tether.protocol.checkpoint import Checkpoint, key_fingerprint

JOURNAL = "audit-checkpoints.jsonl"
CAST = "recordings/s_x/c_y.cast"
CAST_BYTES = (b'{"version": 2, "width": 80, "height": 24, "title": "Alice on laptop"}\n'
              b'[0.5, "i", "uname -a\\r"]\n[0.6, "o", "Linux laptop 6.1.0\\r\\n"]\n')
#: ``... signed 2025-01-02 03:04:05 UTC ...`` in a message
WHEN = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"


def sealed(path: str, content: bytes) -> dict[str, Any]:
    """The detail of the ``recording.sealed`` event the core writes for a closed file."""
    return {"path": path, "sha256": hashlib.sha256(content).hexdigest(), "bytes": len(content)}


#: (action, append() keywords): seq n is EVENTS[n - 1]; checkpoints at 5, 10 and 12
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("broker.started", {"actor": "broker", "stale_sessions_ended": 0}),
    ("session.created", {"actor": "customer", "session_id": "s_x", "ip": "10.0.0.9",
                         "machine": 'Zoë\'s "laptop"\u2028\n\t\\', "client_os": "Linux"}),
    ("session.claimed", {"actor": "alice", "session_id": "s_x", "ip": "10.0.0.7",
                         "technician": "Alice Martin"}),
    ("channel.consented", {"actor": "customer", "session_id": "s_x", "ip": "10.0.0.9",
                           "channel": "c_y", "kind": "terminal"}),
    ("recording.started", {"actor": "broker", "session_id": "s_x", "channel": "c_y",
                           "path": CAST}),
    ("channel.closed", {"actor": "alice", "session_id": "s_x", "channel": "c_y",
                        "reason": "done"}),
    ("recording.sealed", {"actor": "broker", "session_id": "s_x", "channel": "c_y",
                          **sealed(CAST, CAST_BYTES)}),
    ("session.ended", {"actor": "alice", "session_id": "s_x", "ip": "10.0.0.7",
                       "reason": "ended by Alice Martin"}),
    ("session.created", {"actor": "customer", "session_id": "s_z", "ip": "10.0.0.10"}),
    ("session.claimed", {"actor": "alice", "session_id": "s_z", "ip": "10.0.0.7"}),
    ("session.ended", {"actor": "customer", "session_id": "s_z", "ip": "10.0.0.10",
                       "reason": "the customer ended the session"}),
    ("broker.stopped", {"actor": "broker"}),
]
SEALED_SEQ = 7
INTACT = "OK: 12 events, 3 checkpoints, 1 recordings"


# --- building and reading a data directory ---------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run ``tether-broker ARGS`` in this process: (exit code, stdout)."""
    capsys.readouterr()  # only this command's output
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        code = main(list(args))
    finally:  # main() points the root logger at this test's captured stderr
        root.handlers[:] = handlers
        root.setLevel(level)
    return code, capsys.readouterr().out


def init_data(data: Path) -> str:
    """``tether-broker init --data DIR``; returns the audit key fingerprint."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        assert main(["init", "--data", str(data)]) == 0
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return fingerprint_of(data)


def fingerprint_of(data: Path) -> str:
    return key_fingerprint(load_audit_key(data / "certs").public_key())


async def write_events(data: Path, events: list[tuple[str, dict[str, Any]]], *,
                       every: int = 5, signed: bool = True) -> None:
    """Append through the broker's own audit log (and its shutdown checkpoint)."""
    store = await Store.open(data / "tether.db")
    key = load_audit_key(data / "certs") if signed else None
    audit = AuditLog(store, key, data=data, every=every, interval=3600)
    await audit.start()
    try:
        for action, kw in events:
            await audit.append(action, **kw)
    finally:
        await audit.close()
        await store.close()


def add_events(data: Path, events: list[tuple[str, dict[str, Any]]], *,
               signed: bool = True) -> None:
    asyncio.run(write_events(data, events, signed=signed))


def sql(data: Path, *statements: str, params: tuple[Any, ...] = ()) -> None:
    con = sqlite3.connect(data / "tether.db")
    try:
        for statement in statements:
            con.execute(statement, params if "?" in statement else ())
        con.commit()
    finally:
        con.close()


def db_checkpoints(data: Path) -> list[tuple[int, str]]:
    con = sqlite3.connect(data / "tether.db")
    try:
        return list(con.execute("SELECT seq, line FROM audit_checkpoints ORDER BY seq"))
    finally:
        con.close()


def journal_lines(data: Path) -> list[str]:
    return (data / JOURNAL).read_text().splitlines()


def rechain(data: Path) -> None:
    """What an attacker with the database does after editing it: recompute every
    ``prev_hash``/``hash`` from the formula in DESIGN.md, so the chain is consistent."""
    con = sqlite3.connect(data / "tether.db")
    try:
        rows = con.execute("SELECT seq, ts_us, session_id, actor, action, ip, detail"
                           " FROM audit_events ORDER BY seq").fetchall()
        head = GENESIS
        for seq, ts_us, session_id, actor, action, ip, detail in rows:
            body = {"seq": seq, "ts_us": ts_us, "session_id": session_id, "actor": actor,
                    "action": action, "ip": ip, "detail": json.loads(detail)}
            canon = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            new = hashlib.sha256(head + hashlib.sha256(canon.encode()).digest()).digest()
            con.execute("UPDATE audit_events SET prev_hash = ?, hash = ? WHERE seq = ?",
                        (head, new, seq))
            head = new
        con.commit()
    finally:
        con.close()


def resign(line: str, key: ed25519.Ed25519PrivateKey, *, claim: str | None = None) -> str:
    """The same checkpoint signed with ``key`` (optionally claiming another key's name)."""
    cp = Checkpoint.from_json(line)
    made = Checkpoint.make(key, cp.seq, bytes.fromhex(cp.head), cp.ts_us, cp.reason)
    if claim is None:
        return made.to_json()
    unsigned = Checkpoint(cp.seq, cp.head, cp.ts_us, cp.reason, claim)
    return Checkpoint(cp.seq, cp.head, cp.ts_us, cp.reason, claim,
                      key.sign(unsigned.signed_bytes()).hex()).to_json()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("pristine") / "data"
    init_data(data)
    rec = data / CAST
    rec.parent.mkdir(parents=True)
    rec.write_bytes(CAST_BYTES)
    add_events(data, EVENTS)
    return data


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    """A fresh copy of the module's data directory, to tamper with."""
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture
def verify(data: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    def run(*extra: str) -> tuple[int, str]:
        return cli(capsys, "audit", "verify", "--data", str(data), *extra)

    yield run


def failed(out: str, pattern: str) -> None:
    """The output is one ``FAILED:`` line matching ``pattern`` (a regex)."""
    assert re.fullmatch(f"FAILED: {pattern}\n", out), out


# --- the intact directory ------------------------------------------------------------


def test_the_directory_as_written_verifies(data: Path, verify: Any) -> None:
    """Exit 0 and one summary line: events, checkpoints, sealed recordings."""
    assert verify() == (0, INTACT + "\n")


def test_the_checkpoints_are_in_the_database_and_in_the_journal(data: Path) -> None:
    in_db = db_checkpoints(data)
    assert [seq for seq, _ in in_db] == [5, 10, 12]
    assert [line for _, line in in_db] == journal_lines(data)
    reasons = [Checkpoint.from_json(line).reason for _, line in in_db]
    assert reasons == ["events", "events", "shutdown"]


def test_the_installed_command_verifies_and_fails(data: Path) -> None:
    """``tether-broker audit verify`` as a separate process, as an auditor runs it."""
    ok = run_cli("audit", "verify", "--data", str(data), "--key-fingerprint",
                 fingerprint_of(data))
    assert (ok.returncode, ok.stdout) == (0, INTACT + "\n")
    sql(data, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 3")
    bad = run_cli("audit", "verify", "--data", str(data), check=False)
    assert (bad.returncode, bad.stdout) == (1, "FAILED: event 3: contents do not match its hash\n")


def test_events_after_the_last_checkpoint_verify_and_are_reported(data: Path,
                                                                  verify: Any) -> None:
    add_events(data, [("session.created", {"actor": "customer", "session_id": "s_new"}),
                      ("session.ended", {"actor": "customer", "session_id": "s_new"})],
               signed=False)
    code, out = verify()
    assert code == 0
    assert out.splitlines() == ["OK: 14 events, 3 checkpoints, 1 recordings",
                                "2 latest events are not signed by a checkpoint yet"]


def test_a_missing_journal_is_noted_but_the_database_checkpoints_suffice(data: Path,
                                                                        verify: Any) -> None:
    (data / JOURNAL).unlink()
    code, out = verify()
    assert code == 0
    assert out.splitlines() == [INTACT, f"note: {JOURNAL} is missing"]


# --- changed, deleted, reordered events ---------------------------------------------------


@pytest.mark.parametrize(("column", "value"), [
    ("ts_us", "ts_us + 1"),
    ("session_id", "'s_other'"),
    ("session_id", "NULL"),
    ("actor", "'mallory'"),
    ("action", "'nothing.happened'"),
    ("ip", "'192.0.2.1'"),
    ("ip", "NULL"),
    ("detail", """'{"technician":"Mallory"}'"""),
    # the same object, but not the canonical text: still not what was hashed
    ("detail", """'{"technician": "Alice Martin"}'"""),
])
def test_a_changed_field_is_reported(data: Path, verify: Any, column: str, value: str) -> None:
    sql(data, f"UPDATE audit_events SET {column} = {value} WHERE seq = 3")
    code, out = verify()
    assert code == 1
    failed(out, "event 3: contents do not match its hash")


@pytest.mark.parametrize(("column", "value"), [
    ("ts_us", "ts_us + 0.5"),  # a REAL: the stored time is no longer the hashed one
    ("ts_us", "'yesterday'"),  # TEXT in an INTEGER column
    ("actor", "X'6d616c6c6f7279'"),  # a BLOB where text was
    ("hash", "hex(hash)"),  # the hash as text
])
def test_a_value_of_another_type_is_reported_not_a_crash(data: Path, verify: Any, column: str,
                                                         value: str) -> None:
    """SQLite stores whatever it is given; verify must still answer FAILED, not a traceback
    (or, worse, OK)."""
    sql(data, f"UPDATE audit_events SET {column} = {value} WHERE seq = 3")
    code, out = verify()
    assert code == 1
    assert out.startswith("FAILED: event 3: "), out


@pytest.mark.parametrize("seq", [1, 2, SEALED_SEQ, 11, 12])
def test_a_change_in_any_event_is_reported(data: Path, verify: Any, seq: int) -> None:
    """First, last, one with unicode and control characters, the recording's seal."""
    sql(data, "UPDATE audit_events SET actor = actor || '.' WHERE seq = ?", params=(seq,))
    code, out = verify()
    assert code == 1
    failed(out, f"event {seq}: contents do not match its hash")


@pytest.mark.parametrize(("seq", "found"), [(SEALED_SEQ, 8), (1, 2)])
def test_a_deleted_event_is_reported_missing(data: Path, verify: Any, seq: int,
                                             found: int) -> None:
    sql(data, "DELETE FROM audit_events WHERE seq = ?", params=(seq,))
    code, out = verify()
    assert code == 1
    failed(out, f"event {seq}: missing or out of order \\(found event {found} next\\)")


@pytest.mark.parametrize(("columns", "why"), [
    # whole rows, hashes and all: each row is still a valid link, in the wrong place
    (("ts_us", "session_id", "actor", "action", "ip", "detail", "prev_hash", "hash"),
     "prev_hash does not match the chain"),
    # the contents only, each row keeping its hashes
    (("ts_us", "session_id", "actor", "action", "ip", "detail"),
     "contents do not match its hash"),
])
def test_two_swapped_events_are_reported(data: Path, verify: Any, columns: tuple[str, ...],
                                         why: str) -> None:
    sets_6 = ", ".join(f"{c} = (SELECT {c} FROM audit_events WHERE seq = 7)" for c in columns)
    sets_7 = ", ".join(f"{c} = (SELECT {c} FROM swap)" for c in columns)
    sql(data, "CREATE TABLE swap AS SELECT * FROM audit_events WHERE seq = 6",
        f"UPDATE audit_events SET {sets_6} WHERE seq = 6",
        f"UPDATE audit_events SET {sets_7} WHERE seq = 7",
        "DROP TABLE swap")
    code, out = verify()
    assert code == 1
    failed(out, f"event 6: {why}")


def test_a_change_with_every_later_hash_recomputed_is_caught_by_the_checkpoint(
        data: Path, verify: Any) -> None:
    """The chain alone is consistent again; the signed head at event 5 is not."""
    sql(data, """UPDATE audit_events SET detail = '{"technician":"Mallory"}' WHERE seq = 3""")
    rechain(data)
    code, out = verify()
    assert code == 1
    failed(out, f"event 5: the log up to here does not match the checkpoint signed {WHEN}:"
                " events were changed, removed or reordered")


def test_a_deleted_event_with_the_rest_renumbered_and_rehashed_is_caught(
        data: Path, verify: Any) -> None:
    sql(data, f"DELETE FROM audit_events WHERE seq = {SEALED_SEQ}",
        f"UPDATE audit_events SET seq = seq - 1 WHERE seq > {SEALED_SEQ}")
    rechain(data)
    code, out = verify()
    assert code == 1
    # events 1..5 are untouched; the next signed head (event 10) no longer matches
    failed(out, f"event 10: the log up to here does not match the checkpoint signed {WHEN}:"
                " events were changed, removed or reordered")


# --- a truncated tail ------------------------------------------------------------------


TRUNCATED = (f"the log ends at event 10 but a checkpoint signed {WHEN} covers events up to 12:"
             " events were deleted from the end")


def test_a_truncated_tail_is_caught_by_its_checkpoint(data: Path, verify: Any) -> None:
    sql(data, "DELETE FROM audit_events WHERE seq > 10")
    code, out = verify()
    assert code == 1
    failed(out, TRUNCATED)


def test_a_truncated_tail_with_its_database_checkpoints_removed_is_caught_by_the_journal(
        data: Path, verify: Any) -> None:
    sql(data, "DELETE FROM audit_events WHERE seq > 10",
        "DELETE FROM audit_checkpoints WHERE seq > 10")
    code, out = verify()
    assert code == 1
    failed(out, TRUNCATED)


def test_a_truncated_tail_with_its_journal_lines_removed_is_caught_by_the_database(
        data: Path, verify: Any) -> None:
    sql(data, "DELETE FROM audit_events WHERE seq > 10")
    kept = [line for line in journal_lines(data) if Checkpoint.from_json(line).seq <= 10]
    (data / JOURNAL).write_text("".join(line + "\n" for line in kept))
    code, out = verify()
    assert code == 1
    failed(out, TRUNCATED)


def test_a_tail_removed_with_every_local_copy_needs_the_off_machine_copy(
        data: Path, verify: Any) -> None:
    """What the machine alone cannot show: the tail deleted with both local copies of
    its checkpoint is a shorter, consistent log. The copy the collector received
    (forwarded when the checkpoint was made), put back into the journal, shows it."""
    off_machine = journal_lines(data)[-1]
    sql(data, "DELETE FROM audit_events WHERE seq > 10",
        "DELETE FROM audit_checkpoints WHERE seq > 10")
    (data / JOURNAL).write_text("".join(line + "\n" for line in journal_lines(data)[:2]))
    assert verify() == (0, "OK: 10 events, 2 checkpoints, 1 recordings\n")
    with (data / JOURNAL).open("a") as f:
        f.write(off_machine + "\n")
    code, out = verify()
    assert code == 1
    failed(out, TRUNCATED)


# --- recordings -------------------------------------------------------------------------


@pytest.mark.parametrize("edit", [
    lambda b: b.replace(b"Linux laptop", b"Linux LAPTOP"),  # same size
    lambda b: b + b'[0.7, "o", "rm -rf /\\r\\n"]\n',  # appended
    lambda b: b[:-10],  # cut short
    lambda b: b"",  # emptied
])
def test_an_edited_recording_is_reported(data: Path, verify: Any, edit: Any) -> None:
    (data / CAST).write_bytes(edit(CAST_BYTES))
    code, out = verify()
    assert code == 1
    failed(out, f"event {SEALED_SEQ}: recording {CAST} was altered"
                " \\(its sha256 differs from the sealed one\\)")


def test_a_deleted_recording_is_reported(data: Path, verify: Any) -> None:
    (data / CAST).unlink()
    code, out = verify()
    assert code == 1
    failed(out, f"event {SEALED_SEQ}: recording {CAST} is missing")


def test_a_recording_replaced_by_a_directory_is_reported_missing(data: Path,
                                                                 verify: Any) -> None:
    (data / CAST).unlink()
    (data / CAST).mkdir()
    code, out = verify()
    assert code == 1
    failed(out, f"event {SEALED_SEQ}: recording {CAST} is missing")


def test_an_edited_recording_with_its_seal_rewritten_is_reported(data: Path,
                                                                 verify: Any) -> None:
    """Changing the sealed sha256 to the new file's is changing event 7."""
    edited = CAST_BYTES.replace(b"uname -a", b"ls     ")
    (data / CAST).write_bytes(edited)
    detail = json.dumps({"channel": "c_y", **sealed(CAST, edited)}, sort_keys=True,
                        separators=(",", ":"))
    sql(data, "UPDATE audit_events SET detail = ? WHERE seq = 7", params=(detail,))
    code, out = verify()
    assert code == 1
    failed(out, "event 7: contents do not match its hash")


def test_a_recording_purged_by_retention_verifies_and_is_reported(data: Path,
                                                                  verify: Any) -> None:
    # as housekeeping.py writes it, before it deletes the file
    add_events(data, [("recording.purged", {"actor": "broker", "session_id": "s_x",
                                            "channel": "c_y", "path": CAST,
                                            "sha256": sealed(CAST, CAST_BYTES)["sha256"],
                                            "reason": "older than 30 days"})])
    (data / CAST).unlink()
    code, out = verify()
    assert code == 0
    assert out.splitlines() == ["OK: 13 events, 4 checkpoints, 0 recordings",
                                "1 recordings were removed by retention (recording.purged)"]


def test_a_purge_of_another_recording_does_not_excuse_a_missing_one(data: Path,
                                                                    verify: Any) -> None:
    add_events(data, [("recording.purged", {"actor": "broker", "session_id": "s_x",
                                            "path": "recordings/s_x/c_other.cast"})])
    (data / CAST).unlink()
    code, out = verify()
    assert code == 1
    failed(out, f"event {SEALED_SEQ}: recording {CAST} is missing")


# --- checkpoints ------------------------------------------------------------------------


def other_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def test_a_journal_checkpoint_signed_with_another_key_is_reported(data: Path,
                                                                  verify: Any) -> None:
    mallory = other_key()
    lines = journal_lines(data)
    lines[1] = resign(lines[1], mallory)
    (data / JOURNAL).write_text("".join(line + "\n" for line in lines))
    code, out = verify()
    assert code == 1
    failed(out, f"checkpoint at event 10 \\({JOURNAL} line 2\\): signed by another key"
                f" \\({key_fingerprint(mallory.public_key())}\\), not the audit key"
                f" {fingerprint_of(data)}")


def test_a_database_checkpoint_signed_with_another_key_is_reported(data: Path,
                                                                   verify: Any) -> None:
    mallory = other_key()
    (seq, line), = [row for row in db_checkpoints(data) if row[0] == 5]
    sql(data, "UPDATE audit_checkpoints SET line = ? WHERE seq = 5",
        params=(resign(line, mallory),))
    code, out = verify()
    assert code == 1
    failed(out, "checkpoint at event 5 \\(database checkpoint 5\\): signed by another key"
                f" \\({key_fingerprint(mallory.public_key())}\\), not the audit key"
                f" {fingerprint_of(data)}")


def test_a_checkpoint_signed_by_another_key_in_the_audit_keys_name_is_reported(
        data: Path, verify: Any) -> None:
    lines = journal_lines(data)
    lines[0] = resign(lines[0], other_key(), claim=fingerprint_of(data))
    (data / JOURNAL).write_text("".join(line + "\n" for line in lines))
    code, out = verify()
    assert code == 1
    failed(out, f"checkpoint at event 5 \\({JOURNAL} line 1\\): its signature does not verify"
                f" with the audit key {fingerprint_of(data)}")


@pytest.mark.parametrize("forge", [
    lambda cp: {**cp, "sig": cp["sig"][:-2] + ("00" if cp["sig"][-2:] != "00" else "11")},
    lambda cp: {**cp, "sig": cp["sig"][64:] + cp["sig"][:64]},
    # a signed head moved to where it would cover an edited log
    lambda cp: {**cp, "head": "ab" * 32},
    lambda cp: {**cp, "seq": cp["seq"] - 1},
    lambda cp: {**cp, "reason": "interval"},
])
def test_a_forged_checkpoint_is_reported(data: Path, verify: Any, forge: Any) -> None:
    lines = journal_lines(data)
    cp = json.loads(lines[2])
    lines[2] = json.dumps(forge(cp))
    (data / JOURNAL).write_text("".join(line + "\n" for line in lines))
    code, out = verify()
    assert code == 1
    failed(out, f"checkpoint at event \\d+ \\({JOURNAL} line 3\\): its signature does not"
                f" verify with the audit key {fingerprint_of(data)}")


def test_two_checkpoints_at_one_event_signing_different_heads_are_reported(
        data: Path, verify: Any) -> None:
    """Even signed with the real key (root on the broker has it), the journal and the
    database cannot tell two stories about the same event."""
    lines = journal_lines(data)
    cp = Checkpoint.from_json(lines[0])
    lines[0] = Checkpoint.make(load_audit_key(data / "certs"), cp.seq, bytes(32), cp.ts_us,
                               cp.reason).to_json()
    (data / JOURNAL).write_text("".join(line + "\n" for line in lines))
    code, out = verify()
    assert code == 1
    failed(out, "two checkpoints at event 5 sign different heads")


@pytest.mark.parametrize("sig", ["zz" * 64, "", "00"])
def test_a_checkpoint_with_a_malformed_signature_is_reported(data: Path, verify: Any,
                                                             sig: str) -> None:
    lines = journal_lines(data)
    lines[2] = json.dumps({**json.loads(lines[2]), "sig": sig})
    (data / JOURNAL).write_text("".join(line + "\n" for line in lines))
    code, out = verify()
    assert code == 1
    # refused when parsed, or when checked: either way, that line
    failed(out, f"(checkpoint at event 12 \\()?{JOURNAL} line 3\\)?: .*")


@pytest.mark.parametrize(("line", "why"), [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a checkpoint \\(wrong fields\\)"),
    ('{"seq": 5}', "not a checkpoint \\(wrong fields\\)"),
])
def test_a_malformed_journal_line_is_reported(data: Path, verify: Any, line: str,
                                              why: str) -> None:
    with (data / JOURNAL).open("a") as f:
        f.write(line + "\n")
    code, out = verify()
    assert code == 1
    failed(out, f"{JOURNAL} line 4: {why}")


def test_a_malformed_database_checkpoint_is_reported(data: Path, verify: Any) -> None:
    sql(data, "UPDATE audit_checkpoints SET line = 'garbage' WHERE seq = 10")
    code, out = verify()
    assert code == 1
    failed(out, "database checkpoint 10: not JSON")


def test_the_trusted_fingerprint_is_checked(data: Path, verify: Any) -> None:
    assert verify("--key-fingerprint", fingerprint_of(data)) == (0, INTACT + "\n")
    someone_else = key_fingerprint(other_key().public_key())
    code, out = verify("--key-fingerprint", someone_else)
    assert code == 1
    failed(out, f"the audit key in {re.escape(str(data / 'certs'))} is {fingerprint_of(data)},"
                f" not {someone_else}")


def test_a_rewritten_log_re_signed_with_a_replaced_key_fails_the_trusted_fingerprint(
        data: Path, verify: Any) -> None:
    """Root on the broker can replace the key on disk and sign a rewritten log with it;
    the fingerprint the auditor noted at ``init`` is what does not follow."""
    trusted = fingerprint_of(data)
    mallory = other_key()
    sql(data, """UPDATE audit_events SET detail = '{"technician":"Mallory"}' WHERE seq = 3""")
    rechain(data)
    con = sqlite3.connect(data / "tether.db")
    try:
        heads = dict(con.execute("SELECT seq, hash FROM audit_events"))
        lines = []
        for seq, line in db_checkpoints(data):
            old = Checkpoint.from_json(line)
            new = Checkpoint.make(mallory, seq, heads[seq], old.ts_us, old.reason).to_json()
            con.execute("UPDATE audit_checkpoints SET line = ? WHERE seq = ?", (new, seq))
            lines.append(new)
        con.commit()
    finally:
        con.close()
    (data / JOURNAL).write_text("".join(line + "\n" for line in lines))
    (data / "certs" / AUDIT_KEY).write_bytes(mallory.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    code, out = verify("--key-fingerprint", trusted)
    assert code == 1
    failed(out, f"the audit key in .* is {key_fingerprint(mallory.public_key())},"
                f" not {trusted}")
