"""Hash-chained audit log (broker/audit/log.py) on a real SQLite store in a temp file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import T
from tether.broker.audit.log import AuditLog, event_dict
from tether.broker.audit.verify import VerifyFailed, Walk
from tether.broker.store.sqlite import Store
from tether.protocol.canon import GENESIS, chain, event_digest
from tether.protocol.errors import AuditUnavailable

#: how long an append may take before the test calls it hung
WAIT = T / 10


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "tether.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(db_path)
    yield s
    await s.close()


@pytest.fixture
async def audit(store: Store) -> AsyncIterator[AuditLog]:
    a = AuditLog(store)
    await a.start()
    yield a
    with contextlib.suppress(Exception):  # a test may have broken the writer on purpose
        await a.close()


async def fill(audit: AuditLog, n: int) -> list[int]:
    return [await audit.append("test.event", actor="tester", session_id="s_1", ip="10.0.0.9",
                               n=i) for i in range(n)]


def verify_events(rows: list[dict[str, Any]], head: bytes = GENESIS,
                  seq: int = 0) -> tuple[int, str | None, bytes]:
    """(events that verified, the first failure or None, the head reached)."""
    walk, count = Walk({}, seq, head), 0
    try:
        for row in rows:
            walk.step(row["seq"], event_digest(event_dict(row)),
                      (bytes(row["prev_hash"]), bytes(row["hash"])))
            count += 1
    except VerifyFailed as exc:
        return count, str(exc), walk.head
    return count, None, walk.head


async def verify_file(path: Path) -> tuple[int, str | None, bytes]:
    s = await Store.open(path)
    try:
        return verify_events(await s.audit_events())
    finally:
        await s.close()


def raw(path: Path, *statements: str) -> None:
    con = sqlite3.connect(path)
    try:
        for sql in statements:
            con.execute(sql)
        con.commit()
    finally:
        con.close()


# --- appending ----------------------------------------------------------------------


async def test_concurrent_appends_all_commit_with_contiguous_seqs(
    audit: AuditLog, store: Store
) -> None:
    seqs = await asyncio.gather(
        *[audit.append("test.event", actor=f"a{i % 7}", n=i) for i in range(500)]
    )
    assert sorted(seqs) == list(range(1, 501))
    rows = await store.audit_events()
    assert [r["seq"] for r in rows] == list(range(1, 501))
    # each caller was told the seq of its own event
    by_n = {json.loads(r["detail"])["n"]: r["seq"] for r in rows}
    assert by_n == {i: seqs[i] for i in range(500)}
    count, failure, head = verify_events(rows)
    assert (count, failure) == (500, None)
    assert head == bytes(rows[-1]["hash"])


async def test_an_append_is_committed_when_it_returns(audit: AuditLog, db_path: Path) -> None:
    seq = await audit.append("session.claimed", actor="alice", session_id="s_x", ip="10.1.2.3",
                             client_os="Linux")
    # another connection (another process, after a crash) already sees it
    con = sqlite3.connect(db_path)
    try:
        row = con.execute("SELECT seq, actor, action, session_id, ip, detail FROM audit_events"
                          " WHERE seq = ?", (seq,)).fetchone()
    finally:
        con.close()
    assert row == (seq, "alice", "session.claimed", "s_x", "10.1.2.3", '{"client_os":"Linux"}')


async def test_stored_event_is_chained_as_designed(audit: AuditLog, store: Store) -> None:
    await audit.append("first", actor="broker")
    await audit.append("second", actor="alice", session_id="s_2", ip="::1", reason="Zoë")
    first, second = await store.audit_events()
    assert bytes(first["prev_hash"]) == GENESIS
    assert isinstance(first["ts_us"], int) and first["ts_us"] > 1_600_000_000_000_000
    assert bytes(first["hash"]) == chain(GENESIS, event_digest(event_dict(first)))
    assert bytes(second["prev_hash"]) == bytes(first["hash"])
    assert bytes(second["hash"]) == chain(bytes(first["hash"]), event_digest(event_dict(second)))
    assert event_dict(second)["detail"] == {"reason": "Zoë"}


async def test_verify_can_go_a_page_at_a_time(audit: AuditLog, store: Store) -> None:
    await fill(audit, 30)
    whole = verify_events(await store.audit_events())
    count1, failure1, head1 = verify_events(await store.audit_events(limit=12))
    assert (count1, failure1) == (12, None)
    count2, failure2, head2 = verify_events(await store.audit_events(after_seq=12), head1, 12)
    assert (count1 + count2, failure2, head2) == whole


async def test_the_chain_continues_across_restarts(store: Store, db_path: Path) -> None:
    a = AuditLog(store)
    await a.start()
    await fill(a, 5)
    await a.close()
    b = AuditLog(store)
    await b.start()
    assert await b.append("after.restart", actor="broker") == 6
    await b.close()
    assert verify_events(await store.audit_events())[:2] == (6, None)


async def test_an_empty_log_verifies() -> None:
    assert verify_events([]) == (0, None, GENESIS)


# --- tampering -----------------------------------------------------------------------


@pytest.mark.parametrize("sql", [
    "UPDATE audit_events SET detail = '{\"n\":999}' WHERE seq = 4",
    "UPDATE audit_events SET actor = 'mallory' WHERE seq = 4",
    "UPDATE audit_events SET action = 'nothing.happened' WHERE seq = 4",
    "UPDATE audit_events SET ts_us = ts_us + 1 WHERE seq = 4",
    "UPDATE audit_events SET session_id = 's_other' WHERE seq = 4",
    "UPDATE audit_events SET ip = '192.0.2.1' WHERE seq = 4",
    "UPDATE audit_events SET ip = NULL WHERE seq = 4",
])
async def test_a_changed_event_is_reported(audit: AuditLog, store: Store, db_path: Path,
                                           sql: str) -> None:
    await fill(audit, 8)
    assert (await verify_file(db_path))[:2] == (8, None)
    raw(db_path, sql)
    count, failure, _ = await verify_file(db_path)
    assert count == 3
    assert failure is not None and failure.startswith("event 4:")


async def test_a_deleted_middle_event_is_reported_missing(audit: AuditLog,
                                                          db_path: Path) -> None:
    await fill(audit, 8)
    raw(db_path, "DELETE FROM audit_events WHERE seq = 5")
    count, failure, _ = await verify_file(db_path)
    assert count == 4
    assert failure is not None and "event 5" in failure and "missing" in failure


async def test_a_deleted_and_renumbered_event_is_reported(audit: AuditLog,
                                                          db_path: Path) -> None:
    await fill(audit, 8)
    raw(db_path, "DELETE FROM audit_events WHERE seq = 5",
        "UPDATE audit_events SET seq = seq - 1 WHERE seq > 5")
    count, failure, _ = await verify_file(db_path)
    assert count == 4
    assert failure is not None and failure.startswith("event 5:")


@pytest.mark.parametrize("columns", [
    # the events' contents, keeping each row's hashes
    ("ts_us", "session_id", "actor", "action", "ip", "detail"),
    # whole rows, hashes and all: only the order changes
    ("ts_us", "session_id", "actor", "action", "ip", "detail", "prev_hash", "hash"),
])
async def test_two_swapped_events_are_reported(audit: AuditLog, db_path: Path,
                                               columns: tuple[str, ...]) -> None:
    for i in range(8):
        await audit.append(f"action.{i}", actor=f"actor{i}", n=i)
    sets_a = ", ".join(f"{c} = (SELECT {c} FROM audit_events WHERE seq = 6)" for c in columns)
    sets_b = ", ".join(f"{c} = (SELECT {c} FROM swap)" for c in columns)
    raw(db_path,
        "CREATE TABLE swap AS SELECT * FROM audit_events WHERE seq = 5",
        f"UPDATE audit_events SET {sets_a} WHERE seq = 5",
        f"UPDATE audit_events SET {sets_b} WHERE seq = 6",
        "DROP TABLE swap")
    count, failure, _ = await verify_file(db_path)
    assert count == 4
    assert failure is not None and failure.startswith("event 5:")


async def test_a_truncated_tail_still_verifies_but_ends_early(audit: AuditLog,
                                                              db_path: Path) -> None:
    # dropping the newest events leaves a valid prefix: the head then differs from
    # a checkpoint taken before, which is what signed checkpoints are for
    await fill(audit, 8)
    _, _, full_head = await verify_file(db_path)
    raw(db_path, "DELETE FROM audit_events WHERE seq > 6")
    count, failure, head = await verify_file(db_path)
    assert (count, failure) == (6, None)
    assert head != full_head


# --- failing closed ---------------------------------------------------------------------


async def test_append_fails_closed_and_the_chain_resumes(
    audit: AuditLog, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    hooked: list[Exception] = []
    audit.failure_hooks.append(hooked.append)
    await fill(audit, 3)

    async def disk_full(rows: object, checkpoint: object = None) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "append_audit", disk_full)
    with pytest.raises(AuditUnavailable) as info:
        await audit.append("channel.consented", actor="customer", channel="c_1")
    assert info.value.close_code == 1011 and info.value.http_status == 503
    results = await asyncio.gather(
        *[audit.append("x", actor="a", n=i) for i in range(10)], return_exceptions=True
    )
    assert all(isinstance(r, AuditUnavailable) for r in results)
    assert hooked and all(isinstance(e, OSError) for e in hooked)

    monkeypatch.undo()  # the disk has room again
    # the head did not move on failure: the next event follows the last committed one
    assert await audit.append("after.recovery", actor="broker") == 4
    rows = await store.audit_events()
    assert [r["action"] for r in rows] == ["test.event"] * 3 + ["after.recovery"]
    assert verify_events(rows)[:2] == (4, None)


async def test_a_database_refusing_writes_fails_closed(audit: AuditLog, store: Store,
                                                       db_path: Path) -> None:
    hooked: list[Exception] = []
    audit.failure_hooks.append(hooked.append)
    await fill(audit, 2)
    # a real failure inside SQLite, on the store's own connection
    raw(db_path, "CREATE TRIGGER refuse BEFORE INSERT ON audit_events"
                 " BEGIN SELECT RAISE(ABORT, 'refused'); END")
    with pytest.raises(AuditUnavailable):
        await audit.append("lost", actor="a")
    assert len(hooked) == 1
    raw(db_path, "DROP TRIGGER refuse")
    assert await audit.append("kept", actor="a") == 3
    rows = await store.audit_events()
    assert [r["action"] for r in rows] == ["test.event", "test.event", "kept"]
    assert verify_events(rows)[:2] == (3, None)


async def test_a_closed_store_fails_closed(audit: AuditLog, store: Store) -> None:
    hooked: list[Exception] = []
    audit.failure_hooks.append(hooked.append)
    await fill(audit, 1)
    await store.db.close()
    with pytest.raises(AuditUnavailable):
        await audit.append("lost", actor="a")
    assert len(hooked) == 1


@pytest.mark.parametrize("detail", [
    {"machine": "\ud800"},  # a lone surrogate, as json.loads gives for "\\ud800"
    {"blob": b"\x00\x01"},  # not JSON at all
])
async def test_an_event_that_cannot_be_encoded_fails_alone(audit: AuditLog, store: Store,
                                                           detail: dict[str, Any]) -> None:
    await fill(audit, 2)
    try:
        await asyncio.wait_for(audit.append("bad", actor="a", **detail), WAIT)
    except TimeoutError:
        pytest.fail("append of an unencodable event never returned")
    except Exception:  # noqa: S110 - refusing the event is the right outcome
        pass
    else:
        pytest.fail("an unencodable event was accepted")
    # the writer is still alive and the chain intact
    try:
        seq = await asyncio.wait_for(audit.append("good", actor="a"), WAIT)
    except TimeoutError:
        pytest.fail("the audit writer stopped: later appends hang")
    assert seq == 3
    assert verify_events(await store.audit_events())[:2] == (3, None)
