"""Hash-chained audit log with one batching writer (fail closed).

``await audit.append(...)`` returns only once the event is committed; callers
perform their action after that, so nothing happens that the log does not
show. Every event waiting when the writer wakes goes into one transaction,
which is what makes ``synchronous=FULL`` affordable. If a batch cannot be
committed, every waiting caller gets :class:`AuditUnavailable` and the
failure hooks run (the session manager closes the channels it can no longer
account for); the chain head does not move.

With a signing key the log also makes signed checkpoints of its head: every
``every`` events (signed before the batch commits and stored in the same
transaction), every ``interval`` seconds when something was added, and when a
caller asks (session end, export, shutdown). Each is also appended to
``audit-checkpoints.jsonl`` and handed to the off-machine forwarder.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ed25519

from ...protocol.canon import GENESIS, chain, event_digest
from ...protocol.checkpoint import Checkpoint
from ...protocol.errors import AuditUnavailable
from ..store.base import AuditRecords, now_us
from .checkpoints import CHECKPOINT_FILE, append_line

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
    def __init__(self, store: AuditRecords, key: ed25519.Ed25519PrivateKey | None = None, *,
                 data: Path | None = None, every: int = 100, interval: float = 60.0,
                 forward: Callable[[Checkpoint], None] | None = None) -> None:
        self.store = store
        self._pending: list[tuple[dict[str, Any], asyncio.Future[int]]] = []
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._seq = 0
        self._head = GENESIS
        self.failure_hooks: list[Callable[[Exception], None]] = []
        self._key = key
        self._journal = data / CHECKPOINT_FILE if data else None
        self._every, self._interval, self._forward = every, interval, forward
        self._signed_seq = 0  # the last checkpoint's seq
        self._cp_lock = asyncio.Lock()
        self._closing = False

    @property
    def seq(self) -> int:
        return self._seq

    @property
    def key(self) -> ed25519.Ed25519PrivateKey | None:
        """The signing key (export bundles sign their manifest with it)."""
        return self._key

    async def start(self) -> None:
        head = await self.store.audit_head()
        if head:
            self._seq, self._head = head
        self._signed_seq = await self.store.last_checkpoint_seq()
        self._tasks.append(asyncio.create_task(self._writer(), name="audit-writer"))
        if self._key:
            self._tasks.append(asyncio.create_task(self._timer(), name="audit-checkpoints"))

    async def close(self) -> None:
        """Commit what is waiting, sign the head one last time, stop.

        The writer is asked to stop, not cancelled, so a checkpoint it is
        publishing still reaches the file and the forwarder."""
        self._closing = True
        self._wakeup.set()
        for task in self._tasks:
            if task.get_name() != "audit-writer":
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        await self._flush()
        try:
            await self.checkpoint("shutdown")
        except AuditUnavailable:
            log.error("could not sign the audit log at shutdown")

    async def checkpoint(self, reason: str) -> Checkpoint | None:
        """Sign the current head now (nothing happens if it is already signed).

        Raises :class:`AuditUnavailable` when the checkpoint cannot be stored.
        """
        if not self._key:
            return None
        async with self._cp_lock:
            seq, head = self._seq, self._head
            if seq <= self._signed_seq:
                return None
            cp = Checkpoint.make(self._key, seq, head, now_us(), reason)
            try:
                await self.store.add_checkpoint(seq, cp.to_json())
            except Exception as exc:
                log.error("could not store a checkpoint: %s", exc.__class__.__name__)
                raise AuditUnavailable() from exc
            self._signed_seq = max(self._signed_seq, seq)
            await self._published(cp)
            return cp

    async def _published(self, cp: Checkpoint) -> None:
        """After the database has it: the append-only file, then off the machine."""
        if self._journal:
            try:
                await asyncio.to_thread(append_line, self._journal, cp.to_json())
            except OSError as exc:
                log.error("could not append to %s: %s", CHECKPOINT_FILE, exc.__class__.__name__)
        if self._forward:
            self._forward(cp)

    async def _timer(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.checkpoint("interval")
            except AuditUnavailable:
                pass  # logged; the next tick tries again

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
        while not self._closing:
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
        cp = None
        if self._key and seq - self._signed_seq >= self._every and not self._cp_lock.locked():
            cp = Checkpoint.make(self._key, seq, head, now_us(), "events")
        try:
            await self.store.append_audit(rows, (seq, cp.to_json()) if cp else None)
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
        if cp:
            self._signed_seq = max(self._signed_seq, seq)
            await self._published(cp)

