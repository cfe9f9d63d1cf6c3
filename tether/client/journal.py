"""The customer's own record: every request, decision and channel event, and the output.

The shell's output is kept whole as the customer's view filters it (``output``
entries, JSON-escaped): text the live view skipped, or that was drawn over
with CR or BS, is still here (64 MiB a channel, then only a count: see
``watch.OUTPUT_LOG_LIMIT``). A write that fails (a full disk) ends nothing; the
next entry written says how many were lost.

DESIGN.md's honest limit: TLS ends at the broker, so the customer keeps
independent evidence on their own machine. One JSON object per line; no
session code (it is a credential while it lives).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def default_path() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tether" / "client.log"


class Journal:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        # one write(2) an entry, no buffer: a failed write leaves nothing half-held
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.lost = 0  # entries not written since the last one that was

    def write(self, event: str, **detail: Any) -> None:
        """Append one entry. A failed write (a full disk) never ends the session or a
        channel: the next entry that can be written says how many were lost."""
        entry = {"ts": round(time.time(), 3), "event": event, **detail}
        if self.lost:
            entry["entries_lost_before"] = self.lost
        try:
            os.write(self._fd, (json.dumps(entry, ensure_ascii=False) + "\n").encode())
        except OSError:
            self.lost += 1
        else:
            self.lost = 0

    def close(self) -> None:
        os.close(self._fd)
