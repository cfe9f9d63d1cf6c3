"""A customer client's control connection, as the core sees it."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ...protocol import messages as m
from .sessions import Session


class Gone(ConnectionError):
    """A send to a connection that is closing or closed (raised by the front door)."""


@dataclass(eq=False)
class Agent:
    """One customer client's control connection.

    ``send`` raises :class:`Gone` (a ConnectionError) when the connection is
    closing; the core then treats the client as away.
    """

    send: Callable[[m.Message], Awaitable[None]]
    close: Callable[[int, str], Awaitable[None]]
    ip: str
    os: str = ""
    version: str = ""
    session: Session | None = None
    connected: bool = True
    #: counted against the live-codes-per-IP limit (only after a valid hello)
    counted: bool = False


def secret_key(secret: str) -> str:
    """How single-use secrets (relay, resume) are looked up: never stored in clear."""
    return hashlib.sha256(secret.encode()).hexdigest()
