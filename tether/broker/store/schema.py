"""The SQLite schema, its additive migrations, and the outcome filters of the audit search."""

from __future__ import annotations

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    display_name TEXT NOT NULL,
    org TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_us INTEGER NOT NULL,
    totp_seed BLOB,
    totp_step INTEGER NOT NULL DEFAULT 0,
    changed_us INTEGER NOT NULL DEFAULT 0,
    device_epoch INTEGER NOT NULL DEFAULT 0
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
    closed_us INTEGER,
    purged_us INTEGER
);
CREATE INDEX IF NOT EXISTS recordings_by_session ON recordings(session_id);
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
CREATE INDEX IF NOT EXISTS audit_by_time ON audit_events(ts_us);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER PRIMARY KEY,
    line TEXT NOT NULL
);
"""

#: columns added after a data directory may have been created: (table, column, type)
MIGRATIONS = (
    ("recordings", "purged_us", "INTEGER"),
    ("users", "totp_seed", "BLOB"),
    ("users", "totp_step", "INTEGER NOT NULL DEFAULT 0"),
    ("users", "changed_us", "INTEGER NOT NULL DEFAULT 0"),
    ("users", "device_epoch", "INTEGER NOT NULL DEFAULT 0"),
)

#: session outcome filters of the audit console, as SQL over ``sessions s``
OUTCOMES = {
    "active": "s.state != 'ended'",
    "completed": "s.state = 'ended' AND s.consent = 'allowed'",
    "refused": "s.consent = 'refused'",
    "unanswered": "s.consent = 'timeout'",
    "cancelled": "s.state = 'ended' AND s.consent = 'pending'",
}
