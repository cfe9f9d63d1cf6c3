"""The disk guard: no channel is promised a recording the disk cannot hold.

``--min-free-mb``: below that much free space on the database's or the
recordings' volume the core refuses new channels (nothing could be recorded
safely), says so to the technician and the customer, and keeps serving
everything else, the audit console included.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..config import Config

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
