"""Passwords, console sign-in sessions and CSRF tokens.

Argon2id hashing runs in a small thread pool so a burst of sign-ins cannot
stall the event loop, and an unknown user name costs the same as a known one
(a dummy hash is verified) so timing does not reveal who has an account.
Login tokens are 128-bit random values; only their SHA-256 is stored.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ..protocol.errors import RateLimited
from .config import Config
from .store import Store

ROLES = ("technician", "auditor", "admin")
COOKIE = "__Host-tether"
T = TypeVar("T")
PRE_COOKIE = "__Host-tether-pre"


def only_own(user: dict[str, Any], *, reading: bool = False) -> int | None:
    """The technician id whose sessions ``user`` is limited to, or None for all.

    Admins act on and read every session; auditors read every session's record
    but act on none; technicians act on and read their own."""
    if user["role"] == "admin" or (reading and user["role"] == "auditor"):
        return None
    return int(user["id"])


def may_act_on(user: dict[str, Any], technician_id: int) -> bool:
    mine = only_own(user)
    return mine is None or mine == technician_id


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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


class Logins:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self._csrf_key = secrets.token_bytes(32)

    async def create(self, user_id: int) -> str:
        token = secrets.token_urlsafe(16)  # 128 bits
        await self.store.add_login(token_hash(token), user_id)
        return token

    async def lookup(self, token: str | None) -> dict[str, Any] | None:
        """The signed-in user for a cookie value, or None (expired, disabled, unknown)."""
        if not token or len(token) > 64:
            return None
        row = await self.store.login(token_hash(token))
        if row is None or row["disabled"]:
            return None
        if self._expired(row):
            await self.store.delete_login(token_hash(token))
            return None
        if time.time() - row["last_seen_us"] / 1e6 > 30:  # don't write on every request
            await self.store.touch_login(token_hash(token))
        return {
            "id": row["user_id"],
            "name": row["name"],
            "role": row["role"],
            "display_name": row["display_name"],
            "org": row["org"],
        }

    async def valid(self, hashed: str) -> bool:
        """Whether the login stored as ``hashed`` exists, is enabled and has not expired
        (without counting this as activity)."""
        row = await self.store.login(hashed)
        return row is not None and not row["disabled"] and not self._expired(row)

    def _expired(self, row: dict[str, Any]) -> bool:
        now = time.time()
        return (now - row["last_seen_us"] / 1e6 > self.config.login_idle
                or now - row["created_us"] / 1e6 > self.config.login_absolute)

    async def end(self, token: str) -> None:
        await self.store.delete_login(token_hash(token))

    def csrf(self, token: str) -> str:
        """CSRF token bound to a login (or pre-login) cookie; never stored."""
        return hmac.new(self._csrf_key, token.encode(), hashlib.sha256).hexdigest()

    def check_csrf(self, token: str, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(self.csrf(token), presented or "")
