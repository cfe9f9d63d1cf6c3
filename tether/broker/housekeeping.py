"""Retention of recordings and the guard on the data volume's free space.

* ``--retain-recordings-days N``: recording files closed more than N days ago
  are deleted. Each deletion is audited first (``recording.purged`` with the
  path and the sha256 it was sealed with), so ``audit verify`` knows the file
  is gone on purpose. Events are never deleted by the application.
* ``--min-free-mb``: below that much free space the hub refuses new channels
  (nothing could be recorded safely), says so to the technician and the
  customer, and keeps serving everything else, the audit console included.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from ..protocol.errors import AuditUnavailable
from .audit.log import AuditLog
from .config import Config
from .store.sqlite import Store, now_us

log = logging.getLogger("tether.housekeeping")
DAY_US = 86_400_000_000
#: what the technician is told when the disk guard refuses a channel
DISK_LOW = ("refused by the broker: its disk is nearly full, so nothing could be recorded."
            " Free space on the broker's data volume, then try again.")


def free_mb(path: Path) -> float:
    return shutil.disk_usage(path).free / (1 << 20)


def disk_low(config: Config) -> bool:
    """True when the database's or the recordings' volume is below the threshold."""
    if config.min_free_mb <= 0:
        return False
    try:
        return min(free_mb(config.data), free_mb(config.data / "recordings")) < config.min_free_mb
    except OSError:
        return True  # cannot tell: do not promise to record


async def purge_recordings(config: Config, store: Store, audit: AuditLog) -> int:
    """Delete the recordings past retention; returns how many."""
    if config.retain_recordings_days is None:
        return 0
    cutoff = now_us() - int(config.retain_recordings_days * DAY_US)
    purged = 0
    for rec in await store.recordings_to_purge(cutoff):
        await audit.append("recording.purged", actor="broker", session_id=rec["session_id"],
                           channel=rec["channel_id"], path=rec["path"], sha256=rec["sha256"],
                           reason=f"older than {config.retain_recordings_days:g} days")
        try:
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
