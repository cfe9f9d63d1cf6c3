"""Sliding-window counters and token buckets for the broker's limits.

Per-technician and per-IP limits refuse with a retry time (HTTP 429); the
global failure rate never refuses, it slows every redemption down and logs an
alert, so an attacker cannot lock the whole team out. Token buckets bound a
*rate* while allowing a burst: control messages per connection, resumes per
session (a flaky network resumes at once a few times in a row; a loop of drops
is slowed to the refill rate).
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Hashable


def address_key(ip: str) -> str:
    """What a per-address limit counts: the address itself for IPv4, its /64 for IPv6
    (one host is given a whole /64, so counting single IPv6 addresses would give it
    2^64 budgets). Anything that is not an address counts as itself."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return ip


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


class TokenBucket:
    """``burst`` tokens per key, refilled at ``rate`` per second.

    :meth:`take` spends one token and returns 0, or spends nothing and returns
    the seconds until one is there (refuse); :meth:`reserve` always spends one,
    perhaps one still to come, and returns how long to wait for it (delay).
    The owner calls :meth:`forget` when done with a key (a session that
    ended); a bucket of its own per connection needs no key at all.
    """

    def __init__(self, burst: float, rate: float) -> None:
        self.burst = max(1.0, burst)
        self.rate = rate
        self._state: dict[Hashable, tuple[float, float]] = {}  # key -> (tokens, at)

    def _tokens(self, key: Hashable, now: float) -> float:
        tokens, at = self._state.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def take(self, key: Hashable = None) -> float:
        now = time.monotonic()
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            self._state[key] = (tokens - 1.0, now)
            return 0.0
        self._state[key] = (tokens, now)
        return (1.0 - tokens) / self.rate if self.rate > 0 else float("inf")

    def reserve(self, key: Hashable = None) -> float:
        """Spend a token now or one still to come: the seconds to wait for it (0 if there
        is one). Each caller waits behind those before it, so the rate holds."""
        now = time.monotonic()
        tokens = self._tokens(key, now) - 1.0
        self._state[key] = (tokens, now)
        if tokens >= 0:
            return 0.0
        return -tokens / self.rate if self.rate > 0 else float("inf")

    def forget(self, key: Hashable = None) -> None:
        self._state.pop(key, None)


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
