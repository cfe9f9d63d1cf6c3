"""All SQL lives here, behind one small class (the interfaces are in ``base.py``).

Embedded SQLite in WAL mode through aiosqlite, ``synchronous=FULL`` so a
committed audit event survives a power cut. One connection; write
transactions are serialised by a lock so an audit batch never shares a
transaction with another write. A PostgreSQL store would implement the same
methods.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from .base import Conflict, StoreUnavailable, now_us
from .schema import MIGRATIONS, OUTCOMES, SCHEMA


@contextmanager
def translated() -> Iterator[None]:
    """The driver's errors become ours here, and nowhere else (httpx's pattern)."""
    try:
        yield
    except sqlite3.IntegrityError as exc:
        raise Conflict("that record already exists") from exc
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a closed connection
        raise StoreUnavailable() from exc


class Store:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self.db = db
        self.write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Store:
        db = await aiosqlite.connect(path)
        db.row_factory = sqlite3.Row
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute("PRAGMA foreign_keys=ON")
        await db.execute("PRAGMA busy_timeout=5000")
        await db.executescript(SCHEMA)
        for table, column, kind in MIGRATIONS:
            async with db.execute(f"PRAGMA table_info({table})") as cur:
                if not any(r["name"] == column for r in await cur.fetchall()):
                    await db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        await db.commit()
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One statement in its own transaction; returns the rows it changed."""
        async with self.write_lock:
            with translated():
                cur = await self.db.execute(sql, params)
                await self.db.commit()
                return cur.rowcount

    async def _insert(self, sql: str, params: Sequence[Any] = ()) -> int:
        """One INSERT in its own transaction; returns the new row's id."""
        async with self.write_lock:
            with translated():
                cur = await self.db.execute(sql, params)
                await self.db.commit()
                return int(cur.lastrowid or 0)

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        with translated():
            async with self.db.execute(sql, params) as cur:
                row = await cur.fetchone()
        return dict(row) if row else None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        with translated():
            async with self.db.execute(sql, params) as cur:
                return [dict(r) for r in await cur.fetchall()]

    # --- users -------------------------------------------------------------

    async def add_user(
        self, name: str, role: str, display_name: str, org: str, password_hash: str,
        totp_seed: bytes | None = None,
    ) -> int:
        t = now_us()
        return await self._insert(
            "INSERT INTO users (name, role, display_name, org, password_hash, created_us,"
            " totp_seed, changed_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (name, role, display_name, org, password_hash, t, totp_seed, t),
        )

    async def user_by_name(self, name: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM users WHERE name = ?", (name,))

    async def user_by_id(self, user_id: int) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM users WHERE id = ?", (user_id,))

    async def users(self) -> list[dict[str, Any]]:
        return await self._all("SELECT id, name, role, display_name, org, disabled, created_us,"
                               " changed_us FROM users ORDER BY name")

    async def update_user(self, name: str, **values: Any) -> bool | None:
        """Change columns of one user (role, disabled, password_hash, totp_seed, ...);
        the change time lets a running broker notice and revoke what it must.
        None: no such user; False: nothing to change (so nothing is revoked)."""
        row = await self.user_by_name(name)
        if row is None:
            return None
        if all(row[c] == v for c, v in values.items()):
            return False
        cols = ", ".join(f"{c} = ?" for c in values)
        # strictly after every earlier change, even if the clock stepped back or a write
        # from another process committed late: the watcher reads "changed since"
        return bool(await self._write(
            f"UPDATE users SET {cols}, changed_us = MAX(?, (SELECT MAX(changed_us) + 1"  # noqa: S608
            " FROM users)) WHERE name = ?", (*values.values(), now_us(), name)))

    async def users_changed_since(self, since_us: int) -> list[dict[str, Any]]:
        return await self._all("SELECT id, name, role, disabled, created_us, changed_us"
                               " FROM users WHERE changed_us > ? ORDER BY changed_us",
                               (since_us,))

    async def get_meta(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM meta WHERE key = ?", (key,))
        return str(row["value"]) if row else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._write("INSERT INTO meta (key, value) VALUES (?, ?)"
                          " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    async def set_password_hash(self, user_id: int, password_hash: str) -> None:
        """A rehash with new parameters: same password, so nothing is revoked."""
        await self._write("UPDATE users SET password_hash = ? WHERE id = ?",
                          (password_hash, user_id))

    async def use_totp_step(self, user_id: int, step: int) -> bool:
        """Record ``step`` as used; False if it (or a later one) already was."""
        return bool(await self._write(
            "UPDATE users SET totp_step = ? WHERE id = ? AND totp_step < ?",
            (step, user_id, step)))

    async def bump_device_epoch(self, user_id: int) -> None:
        """Every device cookie of the user stops being valid (not an account change:
        ``changed_us`` stays, so the account watcher does not see it again)."""
        await self._write("UPDATE users SET device_epoch = device_epoch + 1 WHERE id = ?",
                          (user_id,))

    async def delete_logins_of(self, user_id: int) -> None:
        await self._write("DELETE FROM login_sessions WHERE user_id = ?", (user_id,))

    # --- login sessions ----------------------------------------------------

    async def add_login(self, token_hash: str, user_id: int) -> None:
        t = now_us()
        await self._write(
            "INSERT INTO login_sessions (token_hash, user_id, created_us, last_seen_us)"
            " VALUES (?, ?, ?, ?)",
            (token_hash, user_id, t, t),
        )

    async def login(self, token_hash: str) -> dict[str, Any] | None:
        return await self._one(
            "SELECT l.*, u.name, u.role, u.display_name, u.org, u.disabled"
            " FROM login_sessions l JOIN users u ON u.id = l.user_id WHERE token_hash = ?",
            (token_hash,),
        )

    async def touch_login(self, token_hash: str) -> None:
        await self._write(
            "UPDATE login_sessions SET last_seen_us = ? WHERE token_hash = ?",
            (now_us(), token_hash),
        )

    async def delete_login(self, token_hash: str) -> None:
        await self._write("DELETE FROM login_sessions WHERE token_hash = ?", (token_hash,))

    # --- support sessions --------------------------------------------------

    async def save_session(self, row: dict[str, Any]) -> None:
        cols = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        updates = ", ".join(f"{c} = excluded.{c}" for c in row if c != "id")
        await self._write(
            f"INSERT INTO sessions ({cols}) VALUES ({marks})"  # noqa: S608 - fixed names
            f" ON CONFLICT(id) DO UPDATE SET {updates}",
            tuple(row.values()),
        )

    async def sessions_for(
        self, technician_id: int | None, limit: int = 50
    ) -> list[dict[str, Any]]:
        if technician_id is None:
            return await self._all(
                "SELECT * FROM sessions ORDER BY created_us DESC LIMIT ?", (limit,)
            )
        return await self._all(
            "SELECT * FROM sessions WHERE technician_id = ? ORDER BY created_us DESC LIMIT ?",
            (technician_id, limit),
        )

    async def end_stale_sessions(self, reason: str) -> int:
        """At start-up: sessions left open by a previous process are over."""
        return await self._write(
            "UPDATE sessions SET state = 'ended', ended_us = ?, end_reason = ?"
            " WHERE state != 'ended'",
            (now_us(), reason),
        )

    # --- recordings --------------------------------------------------------

    async def add_recording(self, session_id: str, channel_id: str, path: str) -> int:
        return await self._insert(
            "INSERT INTO recordings (session_id, channel_id, path) VALUES (?, ?, ?)",
            (session_id, channel_id, path),
        )

    async def seal_recording(self, rec_id: int, sha256: str, size: int) -> None:
        await self._write(
            "UPDATE recordings SET sha256 = ?, bytes = ?, closed_us = ? WHERE id = ?",
            (sha256, size, now_us(), rec_id),
        )

    # --- audit -------------------------------------------------------------

    async def audit_head(self) -> tuple[int, bytes] | None:
        row = await self._one("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
        return (row["seq"], row["hash"]) if row else None

    async def append_audit(self, rows: Iterable[tuple[Any, ...]],
                           checkpoint: tuple[int, str] | None = None) -> None:
        """Insert one batch of chained events (and the checkpoint signing its
        head, if one is due) in one transaction."""
        async with self.write_lock:
            try:
                with translated():
                    await self._append_audit(rows, checkpoint)
            except BaseException:
                await self.db.rollback()
                raise

    async def _append_audit(self, rows: Iterable[tuple[Any, ...]],
                            checkpoint: tuple[int, str] | None) -> None:
        await self.db.executemany(
            "INSERT INTO audit_events (seq, ts_us, session_id, actor, action, ip,"
            " detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        if checkpoint:
            await self.db.execute(
                "INSERT INTO audit_checkpoints (seq, line) VALUES (?, ?)", checkpoint)
        await self.db.commit()

    async def audit_events(self, after_seq: int = 0, limit: int = 10000) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        )

    async def add_checkpoint(self, seq: int, line: str) -> None:
        await self._write("INSERT INTO audit_checkpoints (seq, line) VALUES (?, ?)", (seq, line))

    async def last_checkpoint_seq(self) -> int:
        row = await self._one("SELECT MAX(seq) AS seq FROM audit_checkpoints")
        return int(row["seq"] or 0) if row else 0

    # --- the audit console (read-only) ---------------------------------------

    async def search_sessions(
        self, technician_id: int | None, *, technician: str = "", machine: str = "",
        since_us: int | None = None, until_us: int | None = None, outcome: str = "",
        text: str = "", limit: int = 25, offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of sessions matching every given filter, newest first, and
        the number of matches. ``technician_id`` limits to one technician's own."""
        where: list[str] = ["1"]
        params: list[Any] = []
        if technician_id is not None:
            where.append("s.technician_id = ?")
            params.append(technician_id)
        if technician:
            where.append("(u.name LIKE ? ESCAPE '\\' OR u.display_name LIKE ? ESCAPE '\\')")
            params += [_like(technician)] * 2
        if machine:
            where.append("s.machine LIKE ? ESCAPE '\\'")
            params.append(_like(machine))
        if since_us is not None:
            where.append("s.created_us >= ?")
            params.append(since_us)
        if until_us is not None:
            where.append("s.created_us < ?")
            params.append(until_us)
        if outcome:
            where.append(OUTCOMES[outcome])
        if text:
            where.append("EXISTS (SELECT 1 FROM audit_events e WHERE e.session_id = s.id"
                         " AND e.detail LIKE ? ESCAPE '\\')")
            params.append(_like(text))
        sql = (" FROM sessions s LEFT JOIN users u ON u.id = s.technician_id WHERE "
               + " AND ".join(where))
        total = await self._one("SELECT COUNT(*) AS n" + sql, params)
        rows = await self._all(
            "SELECT s.*, u.name AS tech_name, u.display_name AS tech_display_name,"
            " u.org AS tech_org" + sql + " ORDER BY s.created_us DESC, s.id LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return rows, int(total["n"]) if total else 0

    async def session_row(self, session_id: str) -> dict[str, Any] | None:
        return await self._one(
            "SELECT s.*, u.name AS tech_name, u.display_name AS tech_display_name,"
            " u.org AS tech_org FROM sessions s LEFT JOIN users u ON u.id = s.technician_id"
            " WHERE s.id = ?", (session_id,))

    async def session_events(self, session_id: str) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT * FROM audit_events WHERE session_id = ? ORDER BY seq", (session_id,))

    async def session_events_page(self, session_id: str, *, offset: int = 0, limit: int = -1,
                                  actions: Sequence[str] | None = None
                                  ) -> list[dict[str, Any]]:
        """Part of a session's events in order: a page of the timeline, or only the
        ``actions`` asked for (the record page never loads thousands at once)."""
        where, params = "session_id = ?", [session_id]
        if actions is not None:
            where += f" AND action IN ({', '.join('?' * len(actions))})"
            params += list(actions)
        sql = f"SELECT * FROM audit_events WHERE {where} ORDER BY seq"  # noqa: S608 - only ?s
        return await self._all(sql + " LIMIT ? OFFSET ?", (*params, limit, offset))

    async def session_event_count(self, session_id: str) -> int:
        row = await self._one("SELECT COUNT(*) AS n FROM audit_events WHERE session_id = ?",
                              (session_id,))
        return int(row["n"]) if row else 0

    async def events_between(self, since_us: int, until_us: int, after_seq: int,
                             limit: int) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT * FROM audit_events WHERE ts_us >= ? AND ts_us < ? AND seq > ?"
            " ORDER BY seq LIMIT ?", (since_us, until_us, after_seq, limit))

    async def recordings_for(self, session_id: str) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT * FROM recordings WHERE session_id = ? ORDER BY id", (session_id,))

    async def recordings_to_purge(self, closed_before_us: int) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT * FROM recordings WHERE closed_us < ? AND purged_us IS NULL",
            (closed_before_us,))

    async def mark_purged(self, rec_id: int) -> None:
        await self._write("UPDATE recordings SET purged_us = ? WHERE id = ?", (now_us(), rec_id))


def _like(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, with its own % and _ taken literally."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
