"""Sliding-window counters for the code and sign-in limits.

Per-technician and per-IP limits refuse with a retry time (HTTP 429); the
global failure rate never refuses, it slows every redemption down and logs an
alert, so an attacker cannot lock the whole team out.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Hashable


class SlidingWindow:
    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self._events: dict[Hashable, deque[float]] = {}

    def _trim(self, key: Hashable, now: float) -> deque[float]:
        q = self._events.get(key)
        if q is None:
            q = self._events[key] = deque()
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._events[key]
            q = deque()
        return q

    def retry_after(self, key: Hashable) -> float:
        """Seconds until ``key`` may try again; 0 when it is under the limit."""
        now = time.monotonic()
        q = self._trim(key, now)
        if len(q) < self.limit:
            return 0.0
        return q[-self.limit] + self.window - now

    def hit(self, key: Hashable) -> int:
        now = time.monotonic()
        q = self._trim(key, now)
        q.append(now)
        self._events[key] = q
        return len(q)

    def count(self, key: Hashable) -> int:
        return len(self._trim(key, time.monotonic()))

    def clear(self, key: Hashable) -> None:
        self._events.pop(key, None)
