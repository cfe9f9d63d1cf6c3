"""Channels: request, open (recording first), pair, close, seal, fail closed.

A channel is requested by a technician, opened after the customer's yes with
its recording already open, paired when both ends have presented their own
single-use secret, and closed once, with its recording sealed into the log.
Every state change is a step under the session's lock (``sessions.Steps``);
the pump reports through :class:`~..channels.pump.Hooks` bound here.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from ...protocol import channels as kinds
from ...protocol import messages as m
from ...protocol import sealed, terminal
from ...protocol.consent import MAX_REFUSALS
from ...protocol.errors import (
    AuditUnavailable,
    Conflict,
    Forbidden,
    NotFound,
    TetherError,
)
from ...protocol.states import ChannelEvent, ChannelState
from ..auth.rules import User, may_act_on
from ..channels import codec_for
from ..channels.pump import End, Hooks, Pump
from ..recording import open_recorder, start_writer, suffix
from ..recording.space import DISK_LOW, disk_low
from .agents import Agent, Gone
from .context import Context
from .sessions import Channel, Session

log = logging.getLogger("tether.core")

CUSTOMER_AWAY = "the customer's connection dropped; try again when it is back"


class Channels:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        ctx.audit.failure_hooks.append(self._audit_failed)
        start_writer()

    # --- request -----------------------------------------------------------

    async def request(self, user: User, session: Session, kind: str, cols: int, rows: int,
                      ip: str) -> Channel:
        """A technician asks for a channel; the customer is asked (or the broker says no)."""
        row = kinds.kind(kind)
        ctx = self.ctx
        async with session.lock:
            if session.state != "active":
                raise Conflict("the customer has not accepted this session")
            agent = ctx.agents.get(session)
            if not session.connected or agent is None or not agent.connected:
                raise Conflict(CUSTOMER_AWAY)
            if any(c.kind == kind and c.state == ChannelState.REQUESTED
                   for c in session.channels.values()):
                raise Conflict("the customer is already being asked")
            channel = Channel(session=session, kind=row.name, cols=terminal.clamp(cols),
                              rows=terminal.clamp(rows))
            session.channels[channel.id] = channel
            if session.ledger.exhausted(row.opens):
                await self._refuse_locked(channel, ip, "refused: the customer already said no"
                                          f" {MAX_REFUSALS} times",
                                          f"refused {MAX_REFUSALS} times before")
                return channel
            if disk_low(ctx.config):
                log.error("data volume nearly full: channel refused",
                          extra={"session": session.id})
                await self._refuse_locked(channel, ip, DISK_LOW, "disk nearly full")
                await self._tell(agent, m.Notice(
                    text=f"{user.display_name} asked for"
                         f" {kinds.CAPABILITIES[row.opens].noun}; it was refused without"
                         " asking you because the broker cannot record it (its disk is"
                         " nearly full)."))
                return channel
            await ctx.audit.append("channel.requested", actor=user.name, ip=ip,
                                   session_id=session.id, channel=channel.id, kind=kind)
            try:
                await agent.send(m.ChannelRequest(channel=channel.id, kind=kind,
                                                  technician=user.display_name, org=user.org))
            except Gone as exc:  # the connection is closing: not a stuck request, a clear no
                await self.close_locked(channel, "broker", CUSTOMER_AWAY)
                raise Conflict(CUSTOMER_AWAY) from exc
            ctx.tasks.later(session, ctx.config.consent_wait,
                            lambda: self._decision_expired(channel), "channel-consent-timer")
            ctx.publish(session)
            return channel

    async def _tell(self, agent: Agent, msg: m.Message) -> None:
        try:
            await agent.send(msg)
        except Gone:
            log.info("client gone before it heard a notice")

    async def _refuse_locked(self, channel: Channel, ip: str, shown: str,
                             audited: str) -> None:
        """The broker says no for the customer (who is not asked)."""
        await self.ctx.steps.channel(channel, ChannelEvent.REFUSE, "channel.refused",
                                     actor="broker", ip=ip, shown=shown, kind=channel.kind,
                                     reason=audited)
        self.ctx.publish(channel.session)

    async def _decision_expired(self, channel: Channel) -> None:
        async with channel.session.lock:
            if channel.state == ChannelState.REQUESTED:
                await self.ctx.steps.channel(channel, ChannelEvent.TIMEOUT,
                                             "channel.consent_timeout", actor="broker",
                                             shown="the customer did not answer")
                self.ctx.publish(channel.session)

    # --- the customer's yes ----------------------------------------------------

    async def allow_locked(self, channel: Channel, agent: Agent) -> None:
        """After ``channel.consented`` is committed: recording, pump, secret, ready."""
        ctx, session = self.ctx, channel.session
        try:
            pump = await self._open_pump(channel)
            pump.marker(f"consent: {channel.capability} allowed by the customer")
        except TetherError as exc:
            await self.close_locked(channel, "broker", exc.message, failed=True, tell=False)
            await self._tell(agent, m.ChannelClose(channel=channel.id, reason=exc.message))
            return
        ctx.pumps[channel] = pump
        await ctx.steps.channel(channel, ChannelEvent.ALLOW, None, actor="customer")
        secret = ctx.secrets.issue(channel, "agent")
        try:
            await agent.send(m.ChannelReady(channel=channel.id, secret=secret,
                                            cols=channel.cols, rows=channel.rows))
        except Gone:
            await self.close_locked(channel, "broker", CUSTOMER_AWAY, tell=False)
            return
        self._pairing_timer(channel, "pairing-timer")
        ctx.publish(session)

    async def _open_pump(self, channel: Channel) -> Pump:
        ctx, session = self.ctx, channel.session
        row = kinds.KINDS[channel.kind]
        rel = Path("recordings") / session.id / f"{channel.id}{suffix(row.recorder)}"
        machine = (session.customer or {}).get("machine", "?")
        reveal = ctx.config.reveal_key
        try:
            recorder = open_recorder(row.recorder, ctx.config.data / rel, cols=channel.cols,
                                     rows=channel.rows,
                                     title=f"{session.technician.display_name} on {machine}",
                                     reveal_to=reveal)
        except OSError as exc:
            log.error("cannot open recording: %s", exc.__class__.__name__,
                      extra={"session": session.id, "chan": channel.id})
            await ctx.audit.append("channel.failed", actor="broker", session_id=session.id,
                                   channel=channel.id, reason="recording unavailable")
            raise AuditUnavailable("recording unavailable: channel refused") from exc
        pump = Pump(self._hooks(channel),
                    codec_for(channel.kind, recorder, scrollback=ctx.config.scrollback_bytes),
                    str(rel), max_frame=row.max_frame)
        try:
            pump.rec_id = await ctx.store.add_recording(session.id, channel.id, str(rel))
            # which key hidden input is sealed to (none: it is dropped, only its length kept)
            sealed_to = {} if reveal is None else {"hidden_input_to": sealed.key_id(reveal)}
            await ctx.audit.append("recording.started", actor="broker", session_id=session.id,
                                   channel=channel.id, path=str(rel),
                                   started_us=recorder.started_us, **sealed_to)
        except BaseException as exc:
            await recorder.aclose()  # no half-started recording keeps its file open
            if isinstance(exc, TetherError) or not isinstance(exc, Exception):
                raise
            raise AuditUnavailable("recording unavailable: channel refused") from exc
        session.recorded.append(channel.id)  # from here on it is sealed when the channel ends
        return pump

    def _hooks(self, channel: Channel) -> Hooks:
        session = channel.session

        async def audit(action: str, *, actor: str, ip: str | None = None,
                        **detail: Any) -> int:
            return await self.ctx.audit.append(action, actor=actor, ip=ip,
                                               session_id=session.id, channel=channel.id,
                                               **detail)

        async def closed(actor: str, reason: str, failed: bool) -> None:
            await self.close(channel, actor, reason, failed=failed)

        def recording_failed() -> None:
            self.ctx.tasks.spawn(self._fail(channel, "recording failed: channel closed"),
                                 "recording-failed", owner=session)

        def activity() -> None:
            session.last_activity = time.monotonic()

        return Hooks(audit=audit, flowing=lambda: channel.state == ChannelState.OPEN,
                     paired=lambda: self._paired(channel),
                     detached=lambda user, ip: self._detached(channel, user, ip),
                     closed=closed, recording_failed=recording_failed, activity=activity,
                     ctx={"session": session.id, "chan": channel.id})

    # --- pairing -------------------------------------------------------------

    def viewer_secret(self, user: User, session: Session, channel_id: str) -> str:
        channel = session.channels.get(channel_id)
        if channel is None or channel not in self.ctx.pumps:
            raise NotFound("no such open channel")
        if not channel.attachable:
            raise Conflict(f"channel is {channel.state}")
        return self.ctx.secrets.issue(channel, "viewer", user.id)

    async def serve_agent(self, secret: object, end: End, ip: str) -> None:
        """The customer's end of a channel, from its first frame's secret to its close."""
        channel = self.ctx.secrets.take(secret, "agent")
        await self.ctx.pumps[channel].serve_agent(end, ip)

    async def serve_viewer(self, secret: object, end: End, user: User, ip: str) -> None:
        channel = self.ctx.secrets.take(secret, "viewer", user.id)
        if not may_act_on(user, channel.session.technician.id):
            raise Forbidden("not your session")
        pump = self.ctx.pumps.get(channel)
        if pump is None:
            raise NotFound("no such open channel")
        await pump.serve_viewer(end, user, ip)

    async def _paired(self, channel: Channel) -> None:
        async with channel.session.lock:
            if channel.state == ChannelState.PAIRING:  # audited before a byte flows
                await self.ctx.steps.channel(channel, ChannelEvent.PAIRED, "channel.opened",
                                             actor="broker")
            elif channel.state == ChannelState.DETACHED:
                await self.ctx.steps.channel(channel, ChannelEvent.PAIRED, None,
                                             actor="broker")
            else:
                return
            self.ctx.publish(channel.session)

    async def _detached(self, channel: Channel, user: User, ip: str) -> None:
        async with channel.session.lock:
            if channel.state != ChannelState.OPEN:
                return
            pump = self.ctx.pumps.get(channel)
            try:
                if pump is not None:
                    pump.marker("viewer detached")
                await self.ctx.steps.channel(channel, ChannelEvent.DETACH,
                                             "channel.viewer_detached", actor=user.name, ip=ip)
            except AuditUnavailable as exc:
                await self.close_locked(channel, "broker", exc.message, failed=True)
                return
            self._pairing_timer(channel, "reattach-timer")
            self.ctx.publish(channel.session)

    def _pairing_timer(self, channel: Channel, name: str) -> None:
        self.ctx.tasks.later(channel.session, self.ctx.config.pair_timeout,
                             lambda: self._pairing_expired(channel), name)

    async def _pairing_expired(self, channel: Channel) -> None:
        async with channel.session.lock:
            if channel.attachable and channel.deadline is not None and (
                    time.monotonic() >= channel.deadline - 0.01):
                await self.close_locked(channel, "broker",
                                        "the technician did not attach in time")

    # --- closing ---------------------------------------------------------------

    async def close(self, channel: Channel, actor: str, reason: str, *,
                    failed: bool = False) -> None:
        async with channel.session.lock:
            await self.close_locked(channel, actor, reason, failed=failed)

    async def close_locked(self, channel: Channel, actor: str, reason: str, *,
                           failed: bool = False, tell: bool = True) -> None:
        """Close once: audited (never refused), ends shut, recording sealed, client told."""
        if not channel.live:
            return
        ctx, session = self.ctx, channel.session
        pump = ctx.pumps.pop(channel, None)
        ctx.secrets.forget(channel)
        try:
            await ctx.steps.channel(channel, ChannelEvent.CLOSE, "channel.closed", actor=actor,
                                    shown=reason, must=True, reason=reason)
        finally:
            if pump is not None:
                await pump.shutdown(reason, failed=failed)
                await self._seal(channel, pump)
            agent = ctx.agents.get(session)
            if tell and agent is not None and agent.connected and actor != "customer":
                await self._tell(agent, m.ChannelClose(channel=channel.id, reason=reason))
            ctx.publish(session)

    async def _seal(self, channel: Channel, pump: Pump) -> None:
        """Close the recording and put its sha256 into the log (if it can be written).

        A recording cut short by a failed write is sealed as it is on disk, to
        its last byte, and the event says why it is short."""
        seal = await pump.recorder.aclose()
        detail: dict[str, Any] = {"path": pump.path, "sha256": seal.sha256, "bytes": seal.bytes}
        if seal.error:
            detail["incomplete"] = seal.error
        try:
            await self.ctx.store.seal_recording(pump.rec_id, seal.sha256, seal.bytes)
            await self.ctx.audit.append("recording.sealed", actor="broker",
                                        session_id=channel.session.id, channel=channel.id,
                                        **detail)
        except Exception:
            log.error("could not seal recording",
                      extra={"session": channel.session.id, "chan": channel.id})
            return
        for extra in pump.recorder.companions:  # e.g. the sealed hidden input beside it
            rel = extra.path.relative_to(self.ctx.config.data)
            try:
                await self.ctx.audit.append(
                    "recording.sealed", actor="broker", session_id=channel.session.id,
                    channel=channel.id, path=str(rel), kind=extra.kind,
                    sha256=extra.seal.sha256, bytes=extra.seal.bytes,
                    **({"incomplete": extra.seal.error} if extra.seal.error else {}))
            except Exception:
                log.error("could not seal a recording's companion file",
                          extra={"session": channel.session.id, "chan": channel.id})

    # --- failing closed ----------------------------------------------------------

    def _audit_failed(self, exc: Exception) -> None:
        """The log cannot be written: end every channel we can no longer account for."""
        for channel in list(self.ctx.pumps):
            self.ctx.tasks.spawn(self._fail(channel, "audit log unavailable: channel closed"),
                                 "fail-closed", owner=channel.session)

    async def _fail(self, channel: Channel, reason: str) -> None:
        try:
            await self.close(channel, "broker", reason, failed=True)
        except AuditUnavailable:
            pass  # logged by the audit log; the channel is closed all the same
