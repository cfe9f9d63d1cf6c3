"""Live updates: every change of a session reaches the consoles that may see it.

A subscriber is a bounded queue; a stuck browser tab misses updates (it
reloads the page) instead of growing the broker's memory.
"""

from __future__ import annotations

import asyncio
from typing import Any

QUEUE_DEPTH = 256


class Feed:
    def __init__(self) -> None:
        #: (queue, technician id it is limited to or None, session id or None)
        self._subscribers: set[tuple[asyncio.Queue[dict[str, Any]], int | None, str | None]] = set()

    def publish(self, technician_id: int, session_id: str, data: dict[str, Any]) -> None:
        for queue, only, wanted in list(self._subscribers):
            if only is not None and technician_id != only:
                continue
            if wanted is not None and session_id != wanted:
                continue
            if not queue.full():
                queue.put_nowait(data)

    def subscribe(self, only_technician: int | None,
                  session_id: str | None) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=QUEUE_DEPTH)
        self._subscribers.add((queue, only_technician, session_id))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers = {s for s in self._subscribers if s[0] is not queue}
