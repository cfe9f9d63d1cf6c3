"""The outbound control connection: pinned CA, no compression, backoff.

The client trusts only the CA it was given (``--ca``), never the system
store, and never turns verification off. A certificate or host-name failure
is final (exit 3): retrying would not make a wrong broker right. An
unreachable broker is retried with capped exponential backoff and jitter
(:func:`keep_connected`); close codes are decoded through ``protocol.errors``.
A broker that is busy (too many new clients from this address, or in all) is
not a refusal: the client says so and tries again, waiting longer each time
(:data:`BUSY_START` up to :data:`BACKOFF_CAP`); exit 4 is kept for a real refusal.
"""

from __future__ import annotations

import asyncio
import enum
import json
import random
import ssl
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from ..protocol.errors import AuthError, Busy, RateLimited, TetherError, TLSError, from_close
from ..protocol.messages import CONTROL_MAX_BYTES, TERMINAL_MAX_BYTES
from ..protocol.sanitize import clean_text

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
#: first wait after the broker said it is busy (then doubled up to BACKOFF_CAP)
BUSY_START = 5.0
RELAY_WRITE_BUFFER = 1024 * 1024
#: longest wait for the broker's side of a close handshake: after Ctrl-C the broker
#: may itself be stopping, and the customer's prompt must come back at once
CLOSE_TIMEOUT = 1.0


def ssl_context(ca: Path) -> ssl.SSLContext:
    # With cafile given, create_default_context loads that CA only (no system store).
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def ws_base(broker: str) -> str:
    parts = urlsplit(broker)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError("--broker must be an https:// URL")
    return f"wss://{parts.netloc}"


def is_cert_failure(exc: BaseException) -> bool:
    return isinstance(exc, ssl.SSLCertVerificationError) or (
        isinstance(exc, ssl.SSLError) and "CERTIFICATE" in str(exc).upper()
    )


class Backoff:
    def __init__(self, start: float = BACKOFF_START) -> None:
        self.start = self.delay = start

    def next(self) -> float:
        wait = random.uniform(self.delay / 2, self.delay)  # "equal jitter"
        self.delay = min(BACKOFF_CAP, self.delay * 2)
        return wait

    def reset(self) -> None:
        self.delay = self.start


def open_control(base: str, ctx: ssl.SSLContext) -> connect:
    return connect(f"{base}/ws/agent", ssl=ctx, compression=None, max_size=CONTROL_MAX_BYTES,
                   open_timeout=15, ping_interval=20, ping_timeout=20, origin=None,
                   close_timeout=CLOSE_TIMEOUT)


async def open_relay(base: str, ctx: ssl.SSLContext, secret: str) -> ClientConnection:
    try:
        # A deep write buffer lets the PTY be read while the last batch is still
        # being encrypted and sent; back-pressure still applies past it.
        ws = await connect(f"{base}/ws/relay/agent", ssl=ctx, compression=None,
                           max_size=TERMINAL_MAX_BYTES, open_timeout=15, ping_interval=20,
                           ping_timeout=20, write_limit=RELAY_WRITE_BUFFER,
                           close_timeout=CLOSE_TIMEOUT)
    except ssl.SSLError as exc:
        raise TLSError(str(exc)) from exc
    await ws.send(json.dumps({"secret": secret}))  # first frame, never in the URL
    return ws


class Outcome(enum.Enum):
    """How a run ended; ``cli`` turns it into an exit code."""

    ENDED = "ended"  # by the customer, the technician, or Ctrl-C
    TLS = "tls"  # certificate or host-name failure
    REFUSED = "refused"  # the broker refused this client, or broke the protocol


class Finished(Exception):
    """Raised by a connection's user to end the run with ``outcome``."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome


class Peer(Protocol):
    """What :func:`keep_connected` drives (the client)."""

    stop: asyncio.Event

    def say(self, text: str) -> None: ...

    async def serve(self, ws: ClientConnection) -> None:
        """Use one connection until it drops (raise) or the run ends (raise Finished)."""

    def lost(self, refused_resume: bool) -> None:
        """The connection dropped (``refused_resume``: the broker refused our resume)."""

    def broken(self, reason: str) -> None:
        """The broker broke the protocol: the session is over."""


async def keep_connected(peer: Peer, base: str, ctx: ssl.SSLContext) -> Outcome:
    """Connect, serve, and reconnect with backoff until the run ends."""
    backoff = Backoff()
    busy = Backoff(BUSY_START)  # not reset by a connection that opens: the broker closes it
    for _attempt in range(1_000_000):  # bounded; in practice until a session ends
        if peer.stop.is_set():
            return Outcome.ENDED
        wait: float | None = None
        try:
            async with open_control(base, ctx) as ws:
                backoff.reset()
                await peer.serve(ws)
        except Finished as done:
            return done.outcome
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (401, 403, 429):
                peer.say(f"The broker refused this client (HTTP {status}).")
                return Outcome.REFUSED
            why = f"HTTP {status}"
        except TetherError as exc:  # the broker broke the protocol
            peer.broken("the broker sent a malformed message")
            peer.say("The broker sent something this client does not understand "
                     f"({clean_text(exc.message)}); the session is over.")
            return Outcome.REFUSED
        except (OSError, TimeoutError, WebSocketException) as exc:
            if is_cert_failure(exc):
                peer.say(f"Certificate check failed: {exc}. Is --ca the right file "
                         "for this broker?")
                return Outcome.TLS
            closed = exc.rcvd if isinstance(exc, ConnectionClosed) else None
            error = from_close(closed.code, closed.reason) if closed else None
            if isinstance(error, RateLimited):
                peer.say(f"The broker refused this client: {clean_text(error.message)}")
                return Outcome.REFUSED
            if isinstance(error, Busy):
                wait = busy.next()
                peer.say(f"The broker is busy ({clean_text(error.message)}); trying again in "
                         f"{wait:.0f} s. Press Ctrl-C to stop.")
            else:
                busy.reset()
                peer.lost(refused_resume=isinstance(error, AuthError))
                why = exc.__class__.__name__
        if wait is None:
            wait = backoff.next()
            peer.say(f"Cannot reach the broker ({why}); retrying in {wait:.1f} s. "
                     "Press Ctrl-C to stop.")
        try:
            await asyncio.wait_for(peer.stop.wait(), wait)
        except TimeoutError:
            pass
    return Outcome.ENDED
