"""What every part of the core shares: settings, the log, the live records.

One :class:`Context` per broker. The parts of the core (channels, lifecycle,
consent, redemption, revocation) each get it, and each owns its own concern.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field

from ...protocol.errors import AuthError, Timeout
from ..audit.actions import AuditSink
from ..channels.pump import Pump
from ..config import Config
from ..store.base import CoreStore
from .agents import Agent, secret_key
from .feed import Feed
from .sessions import Channel, Session, Steps
from .tasks import Tasks

log = logging.getLogger("tether.core")


class Secrets:
    """Single-use 128-bit secrets for the two ends of each channel (stored hashed).

    A channel's viewer secret is replaced when a new one is issued (a page
    reload asks again); every secret of a channel dies with the channel.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, tuple[Channel, str]] = {}
        self._viewer: dict[Channel, str] = {}

    @staticmethod
    def new_secret() -> str:
        return secrets.token_urlsafe(16)

    def issue(self, channel: Channel, end: str) -> str:
        if end == "viewer":
            old = self._viewer.pop(channel, None)
            if old:
                self._by_key.pop(old, None)
        secret = self.new_secret()
        key = secret_key(secret)
        self._by_key[key] = (channel, end)
        if end == "viewer":
            self._viewer[channel] = key
        return secret

    def take(self, secret: object, end: str) -> Channel:
        """Consume a secret presented on the ``end`` endpoint; errors say why not."""
        if not isinstance(secret, str) or len(secret) > 64:
            raise AuthError("bad secret")
        entry = self._by_key.pop(secret_key(secret), None)
        if entry is None:
            raise AuthError("unknown or already used secret")
        channel, owner = entry
        if owner == "viewer":
            self._viewer.pop(channel, None)
        if owner != end:
            raise AuthError("secret presented on the wrong endpoint")
        if not channel.attachable:
            raise AuthError("channel is closed")
        if channel.deadline is not None and time.monotonic() > channel.deadline:
            raise Timeout("pairing timed out")
        return channel

    def forget(self, channel: Channel) -> None:
        self._viewer.pop(channel, None)
        self._by_key = {k: v for k, v in self._by_key.items() if v[0] is not channel}


@dataclass
class Context:
    config: Config
    store: CoreStore
    audit: AuditSink
    steps: Steps
    tasks: Tasks = field(default_factory=Tasks)
    feed: Feed = field(default_factory=Feed)
    secrets: Secrets = field(default_factory=Secrets)
    sessions: dict[str, Session] = field(default_factory=dict)
    agents: dict[Session, Agent] = field(default_factory=dict)
    pumps: dict[Channel, Pump] = field(default_factory=dict)

    async def persist(self, session: Session) -> None:
        """Update the session index (the audit log is the record; this is a table)."""
        try:
            await self.store.save_session(session.to_row())
        except Exception:
            log.exception("could not save session", extra={"session": session.id})

    def publish(self, session: Session) -> None:
        self.feed.publish(session.technician.id, session.id, session.to_dict())
