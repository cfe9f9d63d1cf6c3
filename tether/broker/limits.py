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

    def undo(self, key: Hashable) -> None:
        """Take back the latest hit (an attempt counted in advance that succeeded)."""
        q = self._events.get(key)
        if q:
            q.pop()


class Backoff:
    """Growing delays instead of a lock-out (used for sign-in failures).

    The first ``free`` failures in ``window`` seconds cost nothing; each one
    after that doubles the wait before the next try (``base`` seconds, up to
    ``cap``). Nobody is locked out for good, so an attacker who knows a user
    name can slow that account down but never shut its owner out for long.
    """

    def __init__(self, free: int = 5, window: float = 600.0, base: float = 1.0,
                 cap: float = 300.0) -> None:
        self.free, self.base, self.cap = free, base, cap
        self._failures = SlidingWindow(10**9, window)

    def delay(self, failures: int) -> float:
        if failures < self.free:
            return 0.0
        return float(min(self.cap, self.base * 2 ** min(failures - self.free, 32)))

    def retry_after(self, key: Hashable) -> float:
        q = self._failures._trim(key, time.monotonic())
        if not q:
            return 0.0
        return max(0.0, q[-1] + self.delay(len(q)) - time.monotonic())

    def hit(self, key: Hashable) -> int:
        return self._failures.hit(key)

    def undo(self, key: Hashable) -> None:
        self._failures.undo(key)

    def clear(self, key: Hashable) -> None:
        self._failures.clear(key)
