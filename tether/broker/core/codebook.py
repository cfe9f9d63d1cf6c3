"""Live session codes, kept only as HMACs, and how many clients each address holds.

A code is looked up by ``HMAC(key, code)`` with a key that lives only in this
process's memory, so neither a memory dump of the table nor a log line holds
a code. Codes are single use and expire; a broker restart forgets them all
(clients then receive new ones).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import Counter
from dataclasses import dataclass
from typing import Generic, TypeVar

from ...protocol import codes
from ...protocol.errors import BadCode
from .agents import Agent
from .context import Context

T = TypeVar("T")


@dataclass
class _Entry(Generic[T]):
    owner: T
    expires: float


class CodeBook(Generic[T]):
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._key = secrets.token_bytes(32)
        self._codes: dict[bytes, _Entry[T]] = {}

    def _mac(self, code: str) -> bytes:
        return hmac.new(self._key, code.encode(), hashlib.sha256).digest()

    def issue(self, owner: T) -> str:
        self._expire()
        while True:
            code = codes.generate()
            mac = self._mac(code)
            if mac not in self._codes:
                self._codes[mac] = _Entry(owner, time.monotonic() + self.ttl)
                return code

    def redeem(self, typed: str) -> T:
        """Take a code out of the book; raises :class:`BadCode` if not live."""
        code = codes.normalize(typed)
        entry = self._codes.pop(self._mac(code), None)
        if entry is None or entry.expires <= time.monotonic():
            raise BadCode()
        return entry.owner

    def revoke(self, owner: T) -> None:
        for mac in [m for m, e in self._codes.items() if e.owner is owner]:
            del self._codes[mac]

    def _expire(self) -> None:
        now = time.monotonic()
        for mac in [m for m, e in self._codes.items() if e.expires <= now]:
            del self._codes[mac]


class ClientCodes:
    """Live codes (stored as HMACs) and how many clients each address holds."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.book: CodeBook[Agent] = CodeBook(ctx.config.code_ttl)
        self._per_ip: Counter[str] = Counter()

    def full(self, ip: str) -> bool:
        return self._per_ip[ip] >= self.ctx.config.max_codes_per_ip

    def count(self, agent: Agent) -> None:
        """Count a client against the live-codes-per-address limit (undone by forget)."""
        if not agent.counted:
            self._per_ip[agent.ip] += 1
            agent.counted = True

    def forget(self, agent: Agent) -> bool:
        """A client left: its code dies, its address frees a place. True if it was counted."""
        self.book.revoke(agent)
        if not agent.counted:
            return False
        agent.counted = False
        self._per_ip[agent.ip] -= 1
        if self._per_ip[agent.ip] <= 0:
            del self._per_ip[agent.ip]
        return True
