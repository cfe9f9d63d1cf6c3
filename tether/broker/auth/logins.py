"""Console sign-in sessions and CSRF tokens.

Login tokens are 128-bit random values; only their SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

from ..config import Config
from ..store.sqlite import Store

COOKIE = "__Host-tether"
PRE_COOKIE = "__Host-tether-pre"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


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
