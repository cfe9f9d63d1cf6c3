"""The customer's own record: every request, decision and channel event, and the output.

The shell's output is kept whole as the customer's view filters it (``output``
entries, JSON-escaped): text the live view skipped, or that was drawn over
with CR or BS, is still here.

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
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._f = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def write(self, event: str, **detail: Any) -> None:
        entry = {"ts": round(time.time(), 3), "event": event, **detail}
        self._f.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._f.close()
