"""Retention of recordings (the disk guard itself is ``recording/space.py``).

* ``--retain-recordings-days N``: recording files closed more than N days ago
  are deleted. Each deletion is audited first (``recording.purged`` with the
  path and the sha256 it was sealed with), so ``audit verify`` knows the file
  is gone on purpose; the sealed hidden input beside a recording goes with
  it. Events are never deleted by the application.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..protocol.errors import AuditUnavailable
from .audit.log import AuditLog
from .config import Config
from .recording.hidden import KIND, hidden_path
from .store.base import now_us
from .store.sqlite import Store

log = logging.getLogger("tether.housekeeping")
DAY_US = 86_400_000_000


async def purge_recordings(config: Config, store: Store, audit: AuditLog) -> int:
    """Delete the recordings past retention; returns how many."""
    if config.retain_recordings_days is None:
        return 0
    cutoff = now_us() - int(config.retain_recordings_days * DAY_US)
    purged = 0
    reason = f"older than {config.retain_recordings_days:g} days"
    for rec in await store.recordings_to_purge(cutoff):
        await audit.append("recording.purged", actor="broker", session_id=rec["session_id"],
                           channel=rec["channel_id"], path=rec["path"], sha256=rec["sha256"],
                           reason=reason)
        hidden = hidden_path(Path(rec["path"]))  # its sealed hidden input goes with it
        if (config.data / hidden).exists():
            await audit.append("recording.purged", actor="broker",
                               session_id=rec["session_id"], channel=rec["channel_id"],
                               path=str(hidden), kind=KIND, reason=reason)
        try:
            (config.data / hidden).unlink(missing_ok=True)
            (config.data / rec["path"]).unlink(missing_ok=True)
        except OSError as exc:
            log.error("could not delete a recording: %s", exc.__class__.__name__,
                      extra={"session": rec["session_id"], "chan": rec["channel_id"]})
            continue
        await store.mark_purged(rec["id"])
        purged += 1
    return purged


async def run(config: Config, store: Store, audit: AuditLog) -> None:
    """Forever: retention now and every ``housekeeping_interval`` seconds."""
    while True:
        try:
            n = await purge_recordings(config, store, audit)
            if n:
                log.info("recordings purged by retention", extra={"count": n})
        except AuditUnavailable:
            log.error("retention postponed: the audit log cannot be written")
        except Exception:
            log.exception("retention failed")
        await asyncio.sleep(config.housekeeping_interval)
