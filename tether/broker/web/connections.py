"""Who may hold how many connections: the listening socket's guard.

A broker is reachable from anywhere, so one address must not be able to take
every connection it can serve (slowloris: open many TLS connections and send
nothing, or too little too slowly). Three measures:

* at most ``per_ip`` open connections per peer address (an IPv6 /64 counts as
  one address; a whole office behind one NAT still fits: each console tab or
  client needs a few);
* a TLS handshake must finish within ``handshake_timeout`` seconds;
* the process may open as many files as its hard limit allows.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..limits import address_key

log = logging.getLogger("tether.connections")


def raise_file_limit() -> int:
    """Lift the soft limit on open files to the hard one; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


class Guarded(asyncio.Protocol):
    """Counts a connection against its address; refuses it past the cap."""

    def __init__(self, inner: asyncio.Protocol, counts: Counter[str], per_ip: int) -> None:
        self.inner, self.counts, self.per_ip = inner, counts, per_ip
        self.ip: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        ip = address_key(str(peer[0])) if peer else "?"
        if self.counts[ip] >= self.per_ip:
            log.warning("connection refused: too many from one address", extra={"peer": ip})
            transport.close()
            return
        self.counts[ip] += 1
        self.ip = ip
        self.inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.ip is None:
            return
        self.counts[self.ip] -= 1
        if self.counts[self.ip] <= 0:
            del self.counts[self.ip]
        self.inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.ip is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.ip is not None else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()


class GuardedSite(web.SockSite):
    """aiohttp's SockSite with a per-address cap and a TLS handshake timeout."""

    def __init__(self, runner: web.BaseRunner, sock: Any, *, ssl_context: Any,
                 per_ip: int, handshake_timeout: float) -> None:
        super().__init__(runner, sock, ssl_context=ssl_context)
        self.per_ip, self.handshake_timeout = per_ip, handshake_timeout
        self.counts: Counter[str] = Counter()

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        server = self._runner.server
        assert server is not None
        factory: Callable[[], asyncio.Protocol] = lambda: Guarded(  # noqa: E731
            server(), self.counts, self.per_ip)
        self._server = await asyncio.get_running_loop().create_server(
            factory, sock=self._sock, ssl=self._ssl_context, backlog=self._backlog,
            ssl_handshake_timeout=self.handshake_timeout)
