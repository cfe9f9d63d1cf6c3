"""The core's public API: what every front door (web console, SSH) calls.

A front door authenticates its user, turns its connections into
:class:`~.agents.Agent` records and :class:`~..channels.pump.End` objects,
and calls these methods; it never reads the core's records directly nor
re-implements its access rule. The parts behind it each own one concern:

* ``redeem``: codes and redemption limits;  ``consent``: the customer's answers;
* ``channels``: request, pair, close, seal, fail closed;
* ``lifecycle``: end, idle, drop and resume, shutdown;  ``revoke``: lost access;
* ``feed``: live updates;  ``sessions``: the records and the one state writer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ...protocol import messages as m
from ...protocol.errors import AuditUnavailable, NotFound
from ..audit.actions import AuditSink
from ..auth.rules import User, may_act_on, only_own
from ..channels.pump import End
from ..config import Config
from ..store.base import CoreStore
from .agents import Agent
from .channels import Channels
from .codebook import ClientCodes
from .consent import Consent
from .context import Context
from .lifecycle import Lifecycle
from .redeem import Redemption
from .revoke import Revocation
from .sessions import Channel, Session, Steps

log = logging.getLogger("tether.core")


class Core:
    def __init__(self, config: Config, store: CoreStore, audit: AuditSink) -> None:
        ctx = self._ctx = Context(config, store, audit, Steps(audit, config.pair_timeout))
        codes = ClientCodes(ctx)
        self._channels = Channels(ctx)
        self._lifecycle = Lifecycle(ctx, self._channels, codes)
        self._consent = Consent(ctx, self._channels, self._lifecycle)
        self._redemption = Redemption(ctx, codes, self._lifecycle, self._consent)
        self._revocation = Revocation(ctx, self._lifecycle, self._channels)

    # --- customers' clients ----------------------------------------------------------

    async def client_hello(self, agent: Agent, first: m.Hello | m.Resume) -> None:
        """The first message of a control connection: a new client, or one resuming."""
        if isinstance(first, m.Resume):
            await self._lifecycle.resume(agent, first)
        else:
            await self._redemption.hello(agent, first)

    async def client_message(self, agent: Agent, msg: m.Message) -> None:
        await self._consent.dispatch(agent, msg)

    async def client_gone(self, agent: Agent, reason: str) -> None:
        await self._lifecycle.agent_gone(agent, reason)

    # --- technicians -------------------------------------------------------------------

    async def redeem(self, user: User, typed: str, ip: str) -> Session:
        return await self._redemption.redeem(user, typed, ip)

    def session_for(self, user: User, session_id: str) -> Session:
        """A live session ``user`` may act on, else NotFound (others' are not revealed)."""
        session = self._ctx.sessions.get(session_id)
        if session is None or not may_act_on(user, session.technician.id):
            raise NotFound("no such live session")
        return session

    def sessions_for(self, user: User) -> list[Session]:
        """The live sessions ``user`` may see."""
        mine = only_own(user)
        return [s for s in self._ctx.sessions.values()
                if mine is None or s.technician.id == mine]

    async def request_channel(self, user: User, session: Session, kind: str, cols: int,
                              rows: int, ip: str) -> Channel:
        return await self._channels.request(user, session, kind, cols, rows, ip)

    def viewer_secret(self, user: User, session: Session, channel_id: str) -> str:
        return self._channels.viewer_secret(user, session, channel_id)

    async def end_session(self, user: User, session: Session, ip: str) -> None:
        await self._lifecycle.end(session, user.name, f"ended by {user.display_name}", ip=ip)

    # --- channel ends --------------------------------------------------------------------

    async def serve_agent_end(self, secret: object, end: End, ip: str) -> None:
        await self._channels.serve_agent(secret, end, ip)

    async def serve_viewer_end(self, secret: object, end: End, user: User, ip: str) -> None:
        await self._channels.serve_viewer(secret, end, user, ip)

    # --- live updates, revocation, upkeep ------------------------------------------------

    def subscribe(self, user: User, session_id: str | None) -> asyncio.Queue[dict[str, Any]]:
        return self._ctx.feed.subscribe(only_own(user), session_id)

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._ctx.feed.unsubscribe(queue)

    async def revoked(self, user_id: int, reason: str) -> int:
        """Listener for the accounts' revocations: returns how many sessions ended."""
        return await self._revocation.revoked(user_id, reason)

    def code_entry_blocked(self, user_id: int) -> float:
        """Seconds until this technician may enter a session code again (0: may now)."""
        return self._redemption.blocked_for(user_id)

    def clear_code_failures(self, user_id: int) -> None:
        """An admin lifts a technician's code-entry limit (the caller audits it)."""
        self._redemption.clear_failures(user_id)

    async def flush_summaries(self) -> None:
        """Write the summary events (failed codes, clients that never had a session)."""
        await self._redemption.flush_summaries()

    async def shutdown(self) -> None:
        await self._lifecycle.shutdown()
        try:
            await self.flush_summaries()
        except AuditUnavailable:
            log.error("could not write the last summary events")
        await self._ctx.tasks.close()
