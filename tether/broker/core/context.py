"""What every part of the core shares: settings, the log, the live records.

One :class:`Context` per broker. The parts of the core (channels, lifecycle,
consent, redemption, revocation) each get it, and each owns its own concern.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field

from ...protocol.errors import AuthError, Forbidden, Timeout
from ..audit.actions import AuditSink
from ..channels.pump import Pump
from ..config import Config
from ..store.base import CoreStore
from .agents import Agent, secret_key
from .feed import Feed
from .sessions import Channel, Session, Steps
from .tasks import Tasks

log = logging.getLogger("tether.core")


@dataclass(frozen=True)
class _Bound:
    """What a secret is good for: one end of one channel (and one user, for a viewer)."""

    channel: Channel
    end: str
    user_id: int | None


class Secrets:
    """Single-use 128-bit secrets for the two ends of each channel (stored hashed).

    A secret is bound to its channel (so its session), its end, and for a
    viewer the user it was issued to. It is used up only when it is presented
    where it belongs: a stray request on the wrong endpoint or by another user
    is refused without burning the real viewer's secret.

    A channel's viewer secret is replaced when a new one is issued (a page
    reload asks again); every secret of a channel dies with the channel.
    """

    def __init__(self) -> None:
        self._by_key: dict[str, _Bound] = {}
        self._viewer: dict[Channel, str] = {}

    @staticmethod
    def new_secret() -> str:
        return secrets.token_urlsafe(16)

    def issue(self, channel: Channel, end: str, user_id: int | None = None) -> str:
        """A secret for ``end`` of ``channel``; a viewer's names its ``user_id``."""
        if end == "viewer":
            old = self._viewer.pop(channel, None)
            if old:
                self._by_key.pop(old, None)
        secret = self.new_secret()
        key = secret_key(secret)
        self._by_key[key] = _Bound(channel, end, user_id)
        if end == "viewer":
            self._viewer[channel] = key
        return secret

    def take(self, secret: object, end: str, user_id: int | None = None) -> Channel:
        """Consume a secret presented on the ``end`` endpoint (by ``user_id``, for a
        viewer); errors say why not. Checked first, used up only if all match."""
        if not isinstance(secret, str) or len(secret) > 64:
            raise AuthError("bad secret")
        key = secret_key(secret)
        bound = self._by_key.get(key)
        if bound is None:
            raise AuthError("unknown or already used secret")
        if bound.end != end:
            raise AuthError("secret presented on the wrong endpoint")
        if bound.user_id != user_id:
            raise Forbidden("this secret was issued to someone else")
        del self._by_key[key]
        channel = bound.channel
        if end == "viewer":
            self._viewer.pop(channel, None)
        if not channel.attachable:
            raise AuthError("channel is closed")
        if channel.deadline is not None and time.monotonic() > channel.deadline:
            raise Timeout("pairing timed out")
        return channel

    def forget(self, channel: Channel) -> None:
        self._viewer.pop(channel, None)
        self._by_key = {k: v for k, v in self._by_key.items() if v.channel is not channel}


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
