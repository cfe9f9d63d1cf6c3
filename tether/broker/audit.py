"""Hash-chained audit log with one batching writer (fail closed).

``await audit.append(...)`` returns only once the event is committed; callers
perform their action after that, so nothing happens that the log does not
show. Every event waiting when the writer wakes goes into one transaction,
which is what makes ``synchronous=FULL`` affordable. If a batch cannot be
committed, every waiting caller gets :class:`AuditUnavailable` and the
failure hooks run (the session manager closes the channels it can no longer
account for); the chain head does not move.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..protocol.canon import GENESIS, chain, event_digest
from ..protocol.errors import AuditUnavailable
from .store import Store, now_us

log = logging.getLogger("tether.audit")


def event_dict(row: dict[str, Any]) -> dict[str, Any]:
    """The hashed form of an ``audit_events`` row (``detail`` as an object)."""
    detail = row["detail"]
    return {
        "seq": row["seq"],
        "ts_us": row["ts_us"],
        "session_id": row["session_id"],
        "actor": row["actor"],
        "action": row["action"],
        "ip": row["ip"],
        "detail": json.loads(detail) if isinstance(detail, str) else detail,
    }


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._pending: list[tuple[dict[str, Any], asyncio.Future[int]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self._head = GENESIS
        self.failure_hooks: list[Callable[[Exception], None]] = []

    async def start(self) -> None:
        head = await self.store.audit_head()
        if head:
            self._seq, self._head = head
        self._task = asyncio.create_task(self._writer(), name="audit-writer")

    async def close(self) -> None:
        if self._task:
            self._wakeup.set()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            await self._flush()

    async def append(
        self,
        action: str,
        *,
        actor: str,
        session_id: str | None = None,
        ip: str | None = None,
        **detail: Any,
    ) -> int:
        """Append one event; returns its sequence number once committed."""
        event = {
            "ts_us": now_us(),
            "session_id": session_id,
            "actor": actor,
            "action": action,
            "ip": ip,
            "detail": detail,
        }
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._pending.append((event, fut))
        self._wakeup.set()
        return await fut

    async def _writer(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                await self._flush()
            except Exception:  # never let the writer die: callers would wait forever
                log.exception("audit writer error")

    async def _flush(self) -> None:
        batch, self._pending = self._pending, []
        seq, head = self._seq, self._head
        rows, accepted = [], []
        for event, fut in batch:
            try:
                detail = json.dumps(event["detail"], sort_keys=True, separators=(",", ":"),
                                    ensure_ascii=False)
                event["seq"] = seq + 1
                digest = event_digest(event)  # encodes to UTF-8: a lone surrogate fails here
            except (TypeError, ValueError):
                log.error("audit event %r cannot be encoded", event["action"])
                if not fut.done():
                    fut.set_exception(AuditUnavailable("audit event cannot be encoded"))
                continue
            seq += 1
            prev, head = head, chain(head, digest)
            rows.append((seq, event["ts_us"], event["session_id"], event["actor"],
                         event["action"], event["ip"], detail, prev, head))
            accepted.append((seq, fut))
        if not rows:
            return
        try:
            await self.store.append_audit(rows)
        except Exception as exc:  # disk full, read-only, I/O error: fail closed
            log.error("audit write failed: %s", exc.__class__.__name__)
            err = AuditUnavailable()
            for _, fut in accepted:
                if not fut.done():
                    fut.set_exception(err)
            for hook in self.failure_hooks:
                hook(exc)
            return
        self._seq, self._head = seq, head
        for n, fut in accepted:
            if not fut.done():
                fut.set_result(n)


def verify_events(
    rows: Iterable[dict[str, Any]], head: bytes = GENESIS, seq: int = 0
) -> tuple[int, str | None, bytes]:
    """Recompute the chain from ``head`` after event ``seq``.

    Returns (events that verified, the first failure or None, the new head),
    so a long log can be checked a page at a time.
    """
    count = 0
    for row in rows:
        seq += 1
        if row["seq"] != seq:
            return count, f"event {seq}: missing (next is {row['seq']})", head
        if bytes(row["prev_hash"]) != head:
            return count, f"event {seq}: prev_hash does not match the chain", head
        head = chain(head, event_digest(event_dict(row)))
        if bytes(row["hash"]) != head:
            return count, f"event {seq}: contents do not match its hash", head
        count += 1
    return count, None, head


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
