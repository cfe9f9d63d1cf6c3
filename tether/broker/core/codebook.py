"""Live session codes, kept only as HMACs, and the clients waiting with them.

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
from ...protocol.errors import BadCode, Busy
from ..limits import SlidingWindow, address_key
from .agents import Agent
from .arrivals import CONNECTED, LEFT, REFUSED, Arrivals
from .context import Context

T = TypeVar("T")
#: seconds a client told "busy" because of how many wait is asked to wait (a hint)
BUSY_RETRY = 30.0
#: dead codes remembered at most (a bound on memory, whatever the rate of new codes)
MAX_DEAD = 100_000


@dataclass
class _Entry(Generic[T]):
    owner: T
    expires: float


class CodeBook(Generic[T]):
    """Live codes by HMAC; and, for ``remember`` seconds, the HMACs of codes that
    died (used, expired, their client gone), so that a stale code read out by
    mistake is told apart from a guess and costs the technician no attempt."""

    def __init__(self, ttl: float, remember: float = 3600.0) -> None:
        self.ttl = ttl
        self.remember = remember
        self._key = secrets.token_bytes(32)
        self._codes: dict[bytes, _Entry[T]] = {}
        self._dead: dict[bytes, float] = {}  # HMAC -> when to forget it, oldest first

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
        mac = self._mac(codes.normalize(typed))
        entry = self._codes.pop(mac, None)
        if entry is not None:
            self._bury(mac)
        if entry is None or entry.expires <= time.monotonic():
            raise BadCode()
        return entry.owner

    def was_live(self, typed: str) -> bool:
        """True if ``typed`` is a code that was live within the last ``remember`` s."""
        until = self._dead.get(self._mac(codes.normalize(typed)))
        return until is not None and until > time.monotonic()

    def revoke(self, owner: T) -> None:
        for mac in [m for m, e in self._codes.items() if e.owner is owner]:
            del self._codes[mac]
            self._bury(mac)

    def _expire(self) -> None:
        now = time.monotonic()
        for mac in [m for m, e in self._codes.items() if e.expires <= now]:
            del self._codes[mac]
            self._bury(mac)

    def _bury(self, mac: bytes) -> None:
        now = time.monotonic()
        self._dead.pop(mac, None)
        self._dead[mac] = now + self.remember
        while self._dead:  # oldest first: drop what is past, and keep the memory bounded
            first, until = next(iter(self._dead.items()))
            if until > now and len(self._dead) <= MAX_DEAD:
                break
            del self._dead[first]


class ClientCodes:
    """Clients waiting with a code, and the limits on new ones.

    Every limit here is about load, so a client over one is told the broker is
    busy (:class:`Busy`) and waits and tries again; none refuses a client for
    good. They are: new codes per address and window (a flood of hellos gets
    no code and writes no event), clients waiting with a code per address, and
    waiting clients in all, which is what bounds a guesser's odds (README,
    "Session codes"). A client in a session holds no code and counts nowhere,
    so customers behind one NAT address who are already being helped never
    keep the next one out.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        config = ctx.config
        self.book: CodeBook[Agent] = CodeBook(config.code_ttl)
        self.arrivals = Arrivals()
        self._new = SlidingWindow(config.new_codes_per_ip, config.new_code_window)
        self._waiting: Counter[str] = Counter()

    def admit(self, agent: Agent) -> None:
        """Count a new client as waiting for a code, or raise :class:`Busy`."""
        config, ip = self.ctx.config, address_key(agent.ip)
        try:
            retry = self._new.retry_after(ip)
            if retry > 0:
                raise Busy(retry, "too many new clients from this address")
            if self._waiting[ip] >= config.max_codes_per_ip:
                raise Busy(BUSY_RETRY, "too many clients waiting from this address")
            if self._waiting.total() >= config.max_live_codes:
                raise Busy(BUSY_RETRY, "too many clients waiting")
        except Busy:
            self.arrivals.note(ip, REFUSED)
            raise
        self._new.hit(ip)
        self._waiting[ip] += 1
        agent.counted = True
        self.arrivals.note(ip, CONNECTED)

    def release(self, agent: Agent) -> bool:
        """The client stops waiting (claimed, or gone): its code dies. True if it was
        waiting."""
        self.book.revoke(agent)
        if not agent.counted:
            return False
        agent.counted = False
        ip = address_key(agent.ip)
        self._waiting[ip] -= 1
        if self._waiting[ip] <= 0:
            del self._waiting[ip]
        return True

    def left(self, agent: Agent) -> None:
        """The connection closed: if it never reached a session, count it as such."""
        if self.release(agent):
            self.arrivals.note(agent.ip, LEFT)
