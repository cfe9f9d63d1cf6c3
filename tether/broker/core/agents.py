"""A customer client's control connection, and how its answers are worded."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ...protocol import messages as m
from ...protocol.sanitize import clean_text
from .sessions import Session

MAX_REFUSALS = 3
#: how the client's reason for a no is shown to the technician
REFUSALS = {
    "no": "the customer said no",
    "timeout": "the customer did not answer",
    "no terminal": "the customer's client has no terminal to ask on",
    "refused 3 times": "the customer already said no 3 times",
    "root shell not allowed": "the client runs as root without --allow-root",
}


def refusal(reason: str) -> str:
    return REFUSALS.get(reason, f"refused by the customer ({clean_text(reason, 60)})")


@dataclass(eq=False)
class Agent:
    """One customer client's control connection."""

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
