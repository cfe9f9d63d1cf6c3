"""All SQL lives here, behind one small class.

Embedded SQLite in WAL mode through aiosqlite, ``synchronous=FULL`` so a
committed audit event survives a power cut. One connection; write
transactions are serialised by a lock so an audit batch never shares a
transaction with another write. A PostgreSQL store would implement the same
methods.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    display_name TEXT NOT NULL,
    org TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS login_sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    created_us INTEGER NOT NULL,
    last_seen_us INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    technician_id INTEGER REFERENCES users(id),
    state TEXT NOT NULL,
    consent TEXT NOT NULL DEFAULT 'pending',
    created_us INTEGER NOT NULL,
    ended_us INTEGER,
    end_reason TEXT,
    client_ip TEXT,
    machine TEXT,
    os TEXT,
    customer_user TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_tech ON sessions(technician_id, created_us);
CREATE TABLE IF NOT EXISTS recordings (
    id INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    channel_id TEXT NOT NULL,
    path TEXT NOT NULL,
    sha256 TEXT,
    bytes INTEGER,
    closed_us INTEGER
);
CREATE TABLE IF NOT EXISTS audit_events (
    seq INTEGER PRIMARY KEY,
    ts_us INTEGER NOT NULL,
    session_id TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    ip TEXT,
    detail TEXT NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_session ON audit_events(session_id, seq);
"""

AUDIT_COLUMNS = ("seq", "ts_us", "session_id", "actor", "action", "ip", "detail")


def now_us() -> int:
    return time.time_ns() // 1000


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
        await db.commit()
        return cls(db)

    async def close(self) -> None:
        await self.db.close()

    async def _write(self, sql: str, params: Sequence[Any] = ()) -> int:
        async with self.write_lock:
            cur = await self.db.execute(sql, params)
            await self.db.commit()
            return cur.lastrowid or cur.rowcount

    async def _one(self, sql: str, params: Sequence[Any] = ()) -> dict[str, Any] | None:
        async with self.db.execute(sql, params) as cur:
            row = await cur.fetchone()
        return dict(row) if row else None

    async def _all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        async with self.db.execute(sql, params) as cur:
            return [dict(r) for r in await cur.fetchall()]

    # --- users -------------------------------------------------------------

    async def add_user(
        self, name: str, role: str, display_name: str, org: str, password_hash: str
    ) -> int:
        return await self._write(
            "INSERT INTO users (name, role, display_name, org, password_hash, created_us)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (name, role, display_name, org, password_hash, now_us()),
        )

    async def user_by_name(self, name: str) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM users WHERE name = ?", (name,))

    async def user_by_id(self, user_id: int) -> dict[str, Any] | None:
        return await self._one("SELECT * FROM users WHERE id = ?", (user_id,))

    async def set_password(self, name: str, password_hash: str) -> bool:
        return bool(
            await self._write("UPDATE users SET password_hash = ? WHERE name = ?",
                              (password_hash, name))
        )

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
        return await self._write(
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

    async def append_audit(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """Insert one batch of chained events in one transaction."""
        async with self.write_lock:
            try:
                await self.db.executemany(
                    "INSERT INTO audit_events (seq, ts_us, session_id, actor, action, ip,"
                    " detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
                await self.db.commit()
            except BaseException:
                await self.db.rollback()
                raise

    async def audit_events(self, after_seq: int = 0, limit: int = 10000) -> list[dict[str, Any]]:
        return await self._all(
            "SELECT * FROM audit_events WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
        )
