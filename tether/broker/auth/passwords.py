"""Passwords: argon2id in a small thread pool.

Hashing runs in a small thread pool so a burst of sign-ins cannot stall the
event loop, and an unknown user name costs the same as a known one (a dummy
hash is verified) so timing does not reveal who has an account.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ...protocol.errors import RateLimited

T = TypeVar("T")

#: argon2id parameters (OWASP's minimum: 46 MiB, one pass, one lane). A stored
#: hash made with other parameters is upgraded at the next successful sign-in.
TIME_COST, MEMORY_KIB, PARALLELISM = 1, 46 * 1024, 1


class Passwords:
    """argon2id in a small thread pool, with a cap on how many may wait.

    Two workers cap the memory (2 x 46 MiB) and CPU a flood of sign-ins can
    take; past ``max_waiting`` queued checks the broker answers "busy" (429)
    instead of queueing without end. The event loop never hashes.
    """

    def __init__(self, workers: int = 2, max_waiting: int = 64) -> None:
        self._hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB,
                                      parallelism=PARALLELISM)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        self._waiting = 0
        self.max_waiting = max_waiting

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    async def hash(self, password: str) -> str:
        return await self._run(self._hasher.hash, password)

    def _verify(self, stored: str | None, password: str) -> tuple[bool, bool]:
        try:
            ok = self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False, False
        return ok, ok and self._hasher.check_needs_rehash(stored or "")

    async def verify(self, stored: str | None, password: str) -> tuple[bool, bool]:
        """(right password, hash needs upgrading); an unknown user (``stored`` None)
        costs the same as a known one: a dummy hash is checked."""
        return await self._run(self._verify, stored, password)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._waiting >= self.max_waiting:
            raise RateLimited(2.0, "the broker is busy: try again in a moment")
        self._waiting += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
