"""The outbound control connection: pinned CA, no compression, backoff.

The client trusts only the CA it was given (``--ca``), never the system
store, and never turns verification off. A certificate or host-name failure
is final (exit 3): retrying would not make a wrong broker right. An
unreachable broker is retried with capped exponential backoff and jitter.
"""

from __future__ import annotations

import json
import random
import ssl
from pathlib import Path
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect

from ..protocol.errors import TLSError
from ..protocol.messages import CONTROL_MAX_BYTES, TERMINAL_MAX_BYTES

BACKOFF_START = 0.5
BACKOFF_CAP = 30.0
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
    def __init__(self) -> None:
        self.delay = BACKOFF_START

    def next(self) -> float:
        wait = random.uniform(self.delay / 2, self.delay)  # "equal jitter"
        self.delay = min(BACKOFF_CAP, self.delay * 2)
        return wait

    def reset(self) -> None:
        self.delay = BACKOFF_START


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
