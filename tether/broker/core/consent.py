"""The customer's answers, as the broker receives them from the client.

The client decides (consent is enforced on the customer's machine); the
broker records each decision and acts on it: a yes to the session makes it
active, a yes to a channel opens it (recording first), a no is shown to the
technician worded from ``protocol/consent.py``. A decision that arrives after
the broker's own deadline finds the channel already timed out and changes
nothing: both run under the session's lock, one after the other.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ...protocol import messages as m
from ...protocol.consent import refusal_text
from ...protocol.errors import ProtocolError
from ...protocol.sanitize import clean_text
from ...protocol.states import ChannelEvent, ChannelState, SessionEvent, SessionState
from .agents import Agent
from .channels import Channels
from .context import Context
from .lifecycle import Lifecycle
from .sessions import Channel, Session

log = logging.getLogger("tether.core")


class Consent:
    def __init__(self, ctx: Context, channels: Channels, lifecycle: Lifecycle) -> None:
        self.ctx = ctx
        self.channels = channels
        self.lifecycle = lifecycle
        self._handlers: dict[type[m.Message], Callable[[Agent, Any], Awaitable[None]]] = {
            m.SessionDecision: self._session_decision,
            m.ChannelDecision: self._channel_decision,
            m.ChannelClosed: self._channel_closed,
            m.EndSession: self._end,
            m.Heartbeat: self._heartbeat,
        }

    async def dispatch(self, agent: Agent, msg: m.Message) -> None:
        """One message from a client's control channel, by a table of handlers."""
        handler = self._handlers.get(type(msg))
        if handler is None:
            raise ProtocolError(f"{msg.type!r} is not expected from a client")
        await handler(agent, msg)

    # --- the session ---------------------------------------------------------------

    async def _session_decision(self, agent: Agent, msg: m.SessionDecision) -> None:
        session = agent.session
        if session is None:
            raise ProtocolError("no session to decide on")
        steps = self.ctx.steps
        async with session.lock:
            if session.state != SessionState.CLAIMED:
                log.info("late session decision ignored", extra={"session": session.id})
                return
            reason = clean_text(msg.reason, 100)
            if not msg.allow:
                await steps.session(session, SessionEvent.REFUSE, "session.refused",
                                    actor="customer", ip=agent.ip,
                                    shown=f"refused: {refusal_text(reason)}", reason=reason)
                await self.lifecycle.finish_locked(session)
                return
            customer = {"machine": clean_text(msg.machine, 128), "os": clean_text(msg.os, 128),
                        "user": clean_text(msg.user, 64)}
            await steps.session(session, SessionEvent.ALLOW, "session.consented",
                                actor="customer", ip=agent.ip, customer=customer,
                                machine=customer["machine"], os=customer["os"],
                                user=customer["user"])
            await self.ctx.persist(session)
            await self.lifecycle.send_resume_token(agent, session)
            self.ctx.publish(session)
            self.lifecycle.start_timers(session)

    async def session_expired(self, session: Session) -> None:
        async with session.lock:
            if session.state != SessionState.CLAIMED:
                return
            await self.ctx.steps.session(session, SessionEvent.TIMEOUT,
                                         "session.consent_timeout", actor="broker",
                                         shown="the customer did not answer")
            await self.lifecycle.finish_locked(session)

    # --- channels ------------------------------------------------------------------

    def _channel(self, agent: Agent, channel_id: str) -> Channel:
        session = agent.session
        channel = session.channels.get(channel_id) if session else None
        if channel is None:
            raise ProtocolError("unknown channel")
        return channel

    async def _channel_decision(self, agent: Agent, msg: m.ChannelDecision) -> None:
        channel = self._channel(agent, msg.channel)
        session = channel.session
        async with session.lock:
            if channel.state != ChannelState.REQUESTED:
                log.info("late channel decision ignored", extra={"chan": channel.id})
                return
            reason = clean_text(msg.reason, 100)
            if not msg.allow:
                await self.ctx.steps.channel(channel, ChannelEvent.REFUSE, "channel.refused",
                                             actor="customer", ip=agent.ip,
                                             shown=refusal_text(reason), by_customer=True,
                                             kind=channel.kind, reason=reason)
                self.ctx.publish(session)
                return
            await self.ctx.audit.append("channel.consented", actor="customer", ip=agent.ip,
                                        session_id=session.id, channel=channel.id,
                                        kind=channel.kind)
            await self.channels.allow_locked(channel, agent)

    async def _channel_closed(self, agent: Agent, msg: m.ChannelClosed) -> None:
        channel = self._channel(agent, msg.channel)
        if channel.live:
            await self.channels.close(channel, "customer",
                                      clean_text(msg.reason, 100) or "closed by the customer")

    async def _end(self, agent: Agent, msg: m.EndSession) -> None:
        if agent.session is not None and agent.session.live:
            reason = clean_text(msg.reason, 100) or "ended by the customer"
            await self.lifecycle.end(agent.session, "customer", reason, notify_agent=False)

    async def _heartbeat(self, agent: Agent, msg: m.Heartbeat) -> None:
        return None
