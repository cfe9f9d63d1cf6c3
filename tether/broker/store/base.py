"""What the rest of the broker needs from a store, one interface per area.

``sqlite.py`` implements every interface with aiosqlite; a PostgreSQL store
can implement the same without touching the callers. The core and the audit
log depend on these interfaces only (the core imports no SQL driver: a test
checks), and every database error reaches them as :class:`StoreUnavailable`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Protocol

from ...protocol.errors import Conflict as Conflict
from ...protocol.errors import StoreUnavailable as StoreUnavailable


def now_us() -> int:
    return time.time_ns() // 1000


class SessionRecords(Protocol):
    async def save_session(self, row: dict[str, Any]) -> None: ...


class RecordingRecords(Protocol):
    async def add_recording(self, session_id: str, channel_id: str, path: str) -> int: ...

    async def seal_recording(self, rec_id: int, sha256: str, size: int) -> None: ...


class AuditRecords(Protocol):
    async def audit_head(self) -> tuple[int, bytes] | None: ...

    async def append_audit(self, rows: Iterable[tuple[Any, ...]],
                           checkpoint: tuple[int, str] | None = None) -> None: ...

    async def add_checkpoint(self, seq: int, line: str) -> None: ...

    async def last_checkpoint_seq(self) -> int: ...


class CoreStore(SessionRecords, RecordingRecords, Protocol):
    """What the session core writes: the session index and the recordings' rows."""
