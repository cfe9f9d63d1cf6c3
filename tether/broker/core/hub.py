"""The broker's live state: connected clients, sessions, channels, live updates.

Every step that a person would want to see later is audited first and done
second: ``await self.audit.append(...)`` raises :class:`AuditUnavailable`
when the log cannot be written, and the step does not happen. State changes
go through the machines in :mod:`.sessions`; this module decides *when*.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ...protocol import codes
from ...protocol import messages as m
from ...protocol.errors import (
    AuditUnavailable,
    AuthError,
    BadCode,
    Conflict,
    Forbidden,
    NotFound,
    ProtocolError,
    RateLimited,
    TetherError,
    Timeout,
)
from ...protocol.sanitize import clean_text
from ..audit.log import AuditLog
from ..auth.rules import may_act_on, only_own
from ..channels.pump import Relay
from ..config import Config
from ..housekeeping import DISK_LOW, disk_low
from ..limits import SlidingWindow
from ..recording.cast import CastWriter
from ..store.sqlite import Store
from ..web.consoles import Consoles
from .agents import MAX_REFUSALS, Agent, refusal, secret_key
from .codebook import CodeBook
from .sessions import CHANNEL_KINDS, Channel, Session
from .tasks import Tasks

log = logging.getLogger("tether.hub")


class Hub:
    def __init__(self, config: Config, store: Store, audit: AuditLog) -> None:
        self.config = config
        self.store = store
        self.audit = audit
        self.codes: CodeBook[Agent] = CodeBook(config.code_ttl)
        self.sessions: dict[str, Session] = {}
        self.agents: dict[Session, Agent] = {}
        self.relays: dict[Channel, Relay] = {}
        self._secrets: dict[str, tuple[Channel, str]] = {}
        self._resume: dict[str, Session] = {}  # sha256(resume secret) → session
        self._viewer_secret: dict[Channel, str] = {}
        self._codes_per_ip: Counter[str] = Counter()
        self._user_failures = SlidingWindow(config.redeem_failures_per_user, config.fail_window)
        self._ip_failures = SlidingWindow(config.redeem_failures_per_ip, config.fail_window)
        self._global_failures = SlidingWindow(10**9, 60.0)
        self._failure_summary: Counter[tuple[str, str]] = Counter()
        self._subscribers: set[tuple[asyncio.Queue[dict[str, Any]], int | None, str | None]] = set()
        self.tasks = Tasks()
        self.consoles = Consoles()
        audit.failure_hooks.append(self._audit_failed)

    # --- helpers -----------------------------------------------------------

    async def _persist(self, session: Session) -> None:
        try:
            await self.store.save_session(session.to_row())
        except Exception:  # the audit log is the record; the table is an index
            log.exception("could not save session", extra={"session": session.id})

    def publish(self, session: Session) -> None:
        data = session.to_dict()
        for queue, user_id, session_id in list(self._subscribers):
            if user_id is not None and session.technician["id"] != user_id:
                continue
            if session_id is not None and session.id != session_id:
                continue
            if queue.full():
                continue  # a stuck browser tab misses updates; it reloads the page
            queue.put_nowait(data)

    def subscribe(
        self, user: dict[str, Any], session_id: str | None
    ) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=256)
        user_id = only_own(user)
        self._subscribers.add((queue, user_id, session_id))
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers = {s for s in self._subscribers if s[0] is not queue}

    async def revoke(self, user_id: int, reason: str) -> int:
        """A user lost their access: end their sessions and channels, cut their
        console sockets. Returns how many sessions ended."""
        mine = [s for s in self.sessions.values() if s.technician["id"] == user_id and s.live]
        for session in mine:
            await self.end_session(session, "broker", f"the technician's access ended: {reason}")
        for channel, relay in list(self.relays.items()):  # e.g. an admin on another's channel
            if relay.viewer_user_id == user_id:
                await self.close_channel(channel, "broker", f"the viewer's access ended: {reason}")
        await self.consoles.close(user_id, None, "your access was revoked")
        return len(mine)

    def session_for(self, user: dict[str, Any], session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFound("no such live session")
        if not may_act_on(user, session.technician["id"]):
            raise NotFound("no such live session")  # don't reveal others' sessions
        return session

    # --- clients and codes -------------------------------------------------

    async def agent_hello(self, agent: Agent, hello: m.Hello) -> None:
        agent.os = clean_text(hello.os, 64)
        agent.version = clean_text(hello.version, 32)
        if self._codes_per_ip[agent.ip] >= self.config.max_codes_per_ip:
            await self.audit.append("client.refused", actor="client", ip=agent.ip,
                                    reason="too many live codes from this address")
            raise RateLimited(self.config.code_ttl, "too many clients from this address")
        self._count(agent)
        await self.audit.append("client.connected", actor="client", ip=agent.ip,
                                os=agent.os, version=agent.version)
        await self.issue_code(agent)

    def _count(self, agent: Agent) -> None:
        """Count a client against the live-codes-per-IP limit (undone in agent_gone)."""
        self._codes_per_ip[agent.ip] += 1
        agent.counted = True

    async def issue_code(self, agent: Agent) -> None:
        if not agent.connected or agent.session is not None:
            return
        self.codes.revoke(agent)
        await self.audit.append("code.issued", actor="client", ip=agent.ip,
                                ttl_s=self.config.code_ttl)
        if not agent.connected:  # gone during the write: no code, no renewal timer
            return
        code = self.codes.issue(agent)
        await agent.send(m.CodeIssued(code=code, expires_in=self.config.code_ttl))
        self.tasks.later(agent, self.config.code_ttl, lambda: self.issue_code(agent),
                         "code-renewal")

    async def _send_resume_token(self, agent: Agent, session: Session) -> None:
        self._resume = {k: v for k, v in self._resume.items() if v is not session}
        secret = secrets.token_urlsafe(16)
        self._resume[secret_key(secret)] = session
        await agent.send(m.ResumeToken(secret=secret, window=self.config.resume_window))

    async def agent_resume(self, agent: Agent, msg: m.Resume) -> None:
        """A client back within the resume window takes its session up again."""
        agent.os = clean_text(msg.os, 64)
        agent.version = clean_text(msg.version, 32)
        session = self._resume.pop(secret_key(msg.secret), None)
        old = self.agents.get(session) if session else None
        if session is None or not session.live or session.ending or old is None:
            raise AuthError("this session cannot be resumed")
        if old.connected:  # half-open: the token shows it is the same client coming back
            await self.agent_gone(old, "replaced by a resumed connection")
            try:
                await old.close(1000, "replaced by a resumed connection")
            except Exception:
                log.info("old connection already gone", extra={"session": session.id})
        self._count(agent)
        await self.audit.append("session.resumed", actor="client", ip=agent.ip,
                                session_id=session.id)
        agent.session = session
        self.agents[session] = agent
        session.connected = True
        await agent.send(m.Resumed(session=session.id))
        await self._send_resume_token(agent, session)
        self.publish(session)

    async def _resume_expired(self, session: Session, agent: Agent) -> None:
        if session.live and self.agents.get(session) is agent and not agent.connected:
            await self.end_session(session, "client", "the customer's connection was lost",
                                   notify_agent=False)

    async def agent_gone(self, agent: Agent, reason: str) -> None:
        if not agent.connected:
            return
        agent.connected = False
        self.tasks.cancel(agent)
        self.codes.revoke(agent)
        was_counted = agent.counted
        if agent.counted:
            agent.counted = False
            self._codes_per_ip[agent.ip] -= 1
            if self._codes_per_ip[agent.ip] <= 0:
                del self._codes_per_ip[agent.ip]
        session = agent.session
        if (session is not None and session.state == "active" and not session.ending
                and self.config.resume_window > 0 and self.agents.get(session) is agent):
            # A short drop keeps the session (no new code, no new session consent);
            # its channels end now: nothing runs unattended while the customer is away.
            session.connected = False
            try:
                await self.audit.append("session.client_lost", actor="client", ip=agent.ip,
                                        session_id=session.id, reason=reason)
            except AuditUnavailable:
                pass
            for channel in session.live_channels():
                try:
                    await self.close_channel(channel, "broker", "the customer's connection dropped")
                except AuditUnavailable:
                    pass
            self.tasks.later(session, self.config.resume_window,
                             lambda: self._resume_expired(session, agent), "resume-window")
            self.publish(session)
            return
        if session and session.live:
            await self.end_session(session, "client", reason, notify_agent=False)
        elif was_counted:  # its arrival was logged (client.connected): so is its leaving
            try:
                await self.audit.append("client.disconnected", actor="client", ip=agent.ip,
                                        reason=reason)
            except AuditUnavailable:
                pass

    # --- redemption --------------------------------------------------------

    async def redeem(self, user: dict[str, Any], typed: str, ip: str) -> Session:
        if user["role"] not in ("technician", "admin"):
            raise Forbidden("only technicians can connect to a customer")
        code = codes.normalize(typed)  # a typo is caught here and costs no attempt
        retry = max(self._user_failures.retry_after(user["id"]),
                    self._ip_failures.retry_after(ip))
        if retry > 0:
            self._note_failure(user, ip)
            raise RateLimited(retry)
        if self._global_failures.count(None) > self.config.global_failures_per_min:
            log.warning("global code-failure rate exceeded: slowing redemptions",
                        extra={"user": user["name"], "peer": ip})
            await asyncio.sleep(self.config.global_slowdown)
            retry = max(self._user_failures.retry_after(user["id"]),
                        self._ip_failures.retry_after(ip))
            if retry > 0:  # parallel tries must not all slip through during the sleep
                self._note_failure(user, ip)
                raise RateLimited(retry)
        try:
            agent = self.codes.redeem(code)
        except BadCode:
            self._user_failures.hit(user["id"])
            self._ip_failures.hit(ip)
            self._global_failures.hit(None)
            self._note_failure(user, ip)
            raise
        if not agent.connected or agent.session is not None:
            raise BadCode()
        session = Session(technician=user, client_ip=agent.ip, client_os=agent.os)
        await self.audit.append("session.claimed", actor=user["name"], ip=ip,
                                session_id=session.id, client_ip=agent.ip, client_os=agent.os)
        agent.session = session
        self.sessions[session.id] = session
        self.agents[session] = agent
        await self._persist(session)
        await agent.send(m.Claimed(session=session.id, technician=user["display_name"],
                                   org=user["org"]))
        self.tasks.later(session, self.config.consent_wait, lambda: self._consent_expired(session),
                         "session-consent-timer")
        self.tasks.later(session, self.config.max_session,
                         lambda: self.end_session(session, "broker", "maximum session length"),
                         "session-max-timer")
        self.publish(session)
        return session

    def _note_failure(self, user: dict[str, Any], ip: str) -> None:
        self._failure_summary[(user["name"], ip)] += 1

    async def flush_failure_summary(self) -> None:
        """One audit event per (technician, IP) and window, never one per try."""
        summary, self._failure_summary = self._failure_summary, Counter()
        for (name, ip), count in summary.items():
            await self.audit.append("code.redeem_failed", actor=name, ip=ip, count=count,
                                    window_s=self.config.fail_window)

    async def _consent_expired(self, session: Session) -> None:
        if session.state == "claimed":
            await self.audit.append("session.consent_timeout", actor="broker",
                                    session_id=session.id)
            if session.state != "claimed":
                return
            session.fire("timeout", "the customer did not answer")
            await self._finish(session)

    # --- client messages ---------------------------------------------------

    async def dispatch(self, agent: Agent, msg: m.Message) -> None:
        handler = self._HANDLERS.get(type(msg))
        if handler is None:
            raise ProtocolError(f"{msg.type!r} is not expected from a client")
        await handler(self, agent, msg)

    async def _on_session_decision(self, agent: Agent, msg: m.SessionDecision) -> None:
        session = agent.session
        if session is None:
            raise ProtocolError("no session to decide on")
        if session.state != "claimed":
            log.info("late session decision ignored", extra={"session": session.id})
            return
        reason = clean_text(msg.reason, 100)
        if msg.allow:
            customer = {"machine": clean_text(msg.machine, 128), "os": clean_text(msg.os, 128),
                        "user": clean_text(msg.user, 64)}
            await self.audit.append("session.consented", actor="customer", ip=agent.ip,
                                    session_id=session.id, **customer)
            if session.state != "claimed":  # timed out or ended during the write
                return
            session.customer = customer
            session.fire("allow")
            await self._persist(session)
            await self._send_resume_token(agent, session)
            self.publish(session)
            self.tasks.later(session, self.config.idle_timeout, lambda: self._idle_check(session),
                             "session-idle-timer")
        else:
            await self.audit.append("session.refused", actor="customer", ip=agent.ip,
                                    session_id=session.id, reason=reason)
            if session.state != "claimed":
                return
            session.fire("refuse", f"refused: {refusal(reason)}")
            await self._finish(session)

    async def _on_channel_decision(self, agent: Agent, msg: m.ChannelDecision) -> None:
        channel = self._agent_channel(agent, msg.channel)
        if channel.state != "requested":
            log.info("late channel decision ignored", extra={"chan": channel.id})
            return
        session = channel.session
        reason = clean_text(msg.reason, 100)
        if not msg.allow:
            session.refusals[channel.kind] = session.refusals.get(channel.kind, 0) + 1
            await self.audit.append("channel.refused", actor="customer", ip=agent.ip,
                                    session_id=session.id, channel=channel.id,
                                    kind=channel.kind, reason=reason)
            if channel.state != "requested":
                return
            channel.reason = refusal(reason)
            channel.fire("refuse")
            self.publish(session)
            return
        await self.audit.append("channel.consented", actor="customer", ip=agent.ip,
                                session_id=session.id, channel=channel.id, kind=channel.kind)
        try:
            relay = await self._open_relay(channel)
            relay.record(relay.cast.marker, f"consent: {channel.kind} allowed by the customer")
        except TetherError as exc:
            if channel.state == "requested":
                channel.reason = exc.message
                channel.fire("close")
            await agent.send(m.ChannelClose(channel=channel.id, reason=exc.message))
            self.publish(session)
            return
        if channel.state != "requested":  # the decision timed out during the writes
            relay.cast.close()
            return
        self.relays[channel] = relay
        secret = secrets.token_urlsafe(16)
        self._secrets[secret_key(secret)] = (channel, "agent")
        channel.fire("allow")
        channel.deadline = time.monotonic() + self.config.pair_timeout
        await agent.send(m.ChannelReady(channel=channel.id, secret=secret, cols=channel.cols,
                                        rows=channel.rows))
        self.tasks.later(channel.session, self.config.pair_timeout,
                         lambda: self._pairing_expired(channel),
                         "pairing-timer")
        self.publish(session)

    async def _on_channel_closed(self, agent: Agent, msg: m.ChannelClosed) -> None:
        channel = self._agent_channel(agent, msg.channel)
        if channel.live:
            await self.close_channel(channel, "customer",
                                     clean_text(msg.reason, 100) or "closed by the customer")

    async def _on_end(self, agent: Agent, msg: m.EndSession) -> None:
        if agent.session and agent.session.live:
            reason = clean_text(msg.reason, 100) or "ended by the customer"
            await self.end_session(agent.session, "customer", reason, notify_agent=False)

    async def _on_heartbeat(self, agent: Agent, msg: m.Heartbeat) -> None:
        return None

    _HANDLERS: dict[type[m.Message], Callable[[Hub, Agent, Any], Awaitable[None]]] = {
        m.SessionDecision: _on_session_decision,
        m.ChannelDecision: _on_channel_decision,
        m.ChannelClosed: _on_channel_closed,
        m.EndSession: _on_end,
        m.Heartbeat: _on_heartbeat,
    }

    def _agent_channel(self, agent: Agent, channel_id: str) -> Channel:
        session = agent.session
        channel = session.channels.get(channel_id) if session else None
        if channel is None:
            raise ProtocolError("unknown channel")
        return channel

    # --- channels ----------------------------------------------------------

    async def request_channel(
        self, user: dict[str, Any], session: Session, kind: str, cols: int, rows: int, ip: str
    ) -> Channel:
        if kind not in CHANNEL_KINDS:
            raise ProtocolError("unknown channel kind")
        if session.state != "active":
            raise Conflict("the customer has not accepted this session")
        if any(c.kind == kind and c.state == "requested" for c in session.channels.values()):
            raise Conflict("the customer is already being asked")
        agent = self.agents[session]
        channel = Channel(session=session, kind=kind, cols=max(2, min(cols, 1000)),
                          rows=max(2, min(rows, 1000)))
        session.channels[channel.id] = channel
        if session.refusals.get(kind, 0) >= MAX_REFUSALS:
            return await self._refuse(channel, ip, "refused: the customer already said no 3"
                                      " times", "refused 3 times before")
        if disk_low(self.config):
            log.error("data volume nearly full: channel refused", extra={"session": session.id})
            await self._refuse(channel, ip, DISK_LOW, "disk nearly full")
            await agent.send(m.Notice(text=f"{user['display_name']} asked for a {kind}; it was"
                                      " refused without asking you because the broker cannot"
                                      " record it (its disk is nearly full)."))
            return channel
        await self.audit.append("channel.requested", actor=user["name"], ip=ip,
                                session_id=session.id, channel=channel.id, kind=kind)
        await agent.send(m.ChannelRequest(channel=channel.id, kind=kind,
                                          technician=user["display_name"], org=user["org"]))
        self.tasks.later(session, self.config.consent_wait, lambda: self._decision_expired(channel),
                         "channel-consent-timer")
        self.publish(session)
        return channel

    async def _refuse(self, channel: Channel, ip: str, shown: str, audited: str) -> Channel:
        """The broker says no for the customer (who is not asked)."""
        channel.reason = shown
        channel.fire("refuse")
        await self.audit.append("channel.refused", actor="broker", ip=ip,
                                session_id=channel.session.id, channel=channel.id,
                                kind=channel.kind, reason=audited)
        self.publish(channel.session)
        return channel

    async def _decision_expired(self, channel: Channel) -> None:
        if channel.state == "requested":
            await self.audit.append("channel.consent_timeout", actor="broker",
                                    session_id=channel.session.id, channel=channel.id)
            if channel.state != "requested":
                return
            channel.reason = "the customer did not answer"
            channel.fire("timeout")
            self.publish(channel.session)

    async def _open_relay(self, channel: Channel) -> Relay:
        session = channel.session
        rel = Path("recordings") / session.id / f"{channel.id}.cast"
        try:
            cast = CastWriter(self.config.data / rel, channel.cols, channel.rows,
                              title=f"{session.technician['display_name']} on "
                                    f"{(session.customer or {}).get('machine', '?')}")
        except OSError as exc:
            log.error("cannot open recording: %s", exc.__class__.__name__,
                      extra={"session": session.id, "chan": channel.id})
            await self.audit.append("channel.failed", actor="broker", session_id=session.id,
                                    channel=channel.id, reason="recording unavailable")
            raise AuditUnavailable("recording unavailable: channel refused") from exc
        relay = Relay(self, channel, cast, str(rel))
        try:
            relay.rec_id = await self.store.add_recording(session.id, channel.id, str(rel))
            await self.audit.append("recording.started", actor="broker", session_id=session.id,
                                    channel=channel.id, path=str(rel),
                                    started_us=cast.started_us)
            session.recorded.append(channel.id)
        except BaseException as exc:
            cast.close()  # no half-started recording keeps its file open
            if isinstance(exc, TetherError) or not isinstance(exc, Exception):
                raise
            raise AuditUnavailable("recording unavailable: channel refused") from exc
        return relay

    def viewer_secret(self, channel: Channel) -> str:
        if channel.state not in ("pairing", "detached"):
            raise Conflict(f"channel is {channel.state}")
        old = self._viewer_secret.pop(channel, None)
        if old:
            self._secrets.pop(old, None)
        secret = secrets.token_urlsafe(16)
        key = secret_key(secret)
        self._secrets[key] = (channel, "viewer")
        self._viewer_secret[channel] = key
        return secret

    def take_secret(self, secret: object, end: str) -> Channel:
        """Consume a single-use secret presented on the ``end`` endpoint."""
        if not isinstance(secret, str) or len(secret) > 64:
            raise AuthError("bad secret")
        entry = self._secrets.pop(secret_key(secret), None)
        if entry is None:
            raise AuthError("unknown or already used secret")
        channel, owner = entry
        if owner == "viewer":
            self._viewer_secret.pop(channel, None)
        if owner != end:
            raise AuthError("secret presented on the wrong endpoint")
        if not channel.live or channel not in self.relays:
            raise AuthError("channel is closed")
        if channel.deadline is not None and time.monotonic() > channel.deadline:
            raise Timeout("pairing timed out")
        return channel

    async def _pairing_expired(self, channel: Channel) -> None:
        relay = self.relays.get(channel)
        if channel.state in ("pairing", "detached") and relay and (
            channel.deadline is not None and time.monotonic() >= channel.deadline - 0.01
        ):
            await self.close_channel(channel, "broker", "the technician did not attach in time")

    def viewer_detached(self, channel: Channel) -> None:
        channel.deadline = time.monotonic() + self.config.pair_timeout
        self.tasks.later(channel.session, self.config.pair_timeout,
                         lambda: self._pairing_expired(channel),
                         "reattach-timer")

    async def close_channel(self, channel: Channel, actor: str, reason: str,
                            *, failed: bool = False) -> None:
        if not channel.live:
            return
        session = channel.session
        relay = self.relays.pop(channel, None)
        channel.reason = reason
        channel.fire("close")
        self._viewer_secret.pop(channel, None)
        self._secrets = {k: v for k, v in self._secrets.items() if v[0] is not channel}
        try:
            await self.audit.append("channel.closed", actor=actor, session_id=session.id,
                                    channel=channel.id, reason=reason)
        finally:
            if relay:
                await relay.shutdown(reason, failed=failed)
                await self._seal(relay)
            agent = self.agents.get(session)
            if agent and agent.connected and actor != "customer":
                await agent.send(m.ChannelClose(channel=channel.id, reason=reason))
            self.publish(session)

    async def _seal(self, relay: Relay) -> None:
        """Close the recording and put its sha256 into the log (if it can be written)."""
        sha, size = relay.cast.close(), relay.cast.size
        channel = relay.channel
        try:
            await self.store.seal_recording(relay.rec_id, sha, size)
            await self.audit.append("recording.sealed", actor="broker",
                                    session_id=channel.session.id, channel=channel.id,
                                    path=relay.path, sha256=sha, bytes=size)
        except Exception:
            log.error("could not seal recording",
                      extra={"session": channel.session.id, "chan": channel.id})

    # --- ending ------------------------------------------------------------

    async def end_session(self, session: Session, actor: str, reason: str,
                          *, ip: str | None = None, notify_agent: bool = True) -> None:
        if not session.live or session.ending:
            return
        session.ending = True  # a second end (both sides at once) does nothing
        try:
            await self.audit.append("session.ended", actor=actor, ip=ip,
                                    session_id=session.id, reason=reason,
                                    recordings=session.recorded)
        except AuditUnavailable:
            # Ending is never refused: what cannot be recorded must stop. The log
            # shows the gap; the broker log says why.
            log.error("session ended without its audit event", extra={"session": session.id})
        finally:
            if session.live:
                session.fire("end", reason)
                await self._finish(session, notify_agent=notify_agent)
                try:  # sign the session's record (channels closed, recordings sealed)
                    await self.audit.checkpoint("session end")
                except AuditUnavailable:
                    pass  # logged by the audit log

    async def _finish(self, session: Session, *, notify_agent: bool = True) -> None:
        self.tasks.cancel(session)
        for channel in session.live_channels():
            try:
                await self.close_channel(channel, "broker", "the session ended")
            except AuditUnavailable:
                pass
        self._resume = {k: v for k, v in self._resume.items() if v is not session}
        agent = self.agents.pop(session, None)
        if agent and agent.connected and notify_agent:
            try:
                await agent.send(m.Ended(reason=session.end_reason or "ended"))
            except Exception:
                log.info("client gone before it heard the end", extra={"session": session.id})
        if agent:
            agent.session = None
            if agent.connected:
                await agent.close(1000, "session ended")
        self.sessions.pop(session.id, None)
        await self._persist(session)
        self.publish(session)

    async def _idle_check(self, session: Session) -> None:
        if session.live:
            idle = time.monotonic() - session.last_activity
            if idle >= self.config.idle_timeout - 0.5:
                await self.end_session(session, "broker", "idle timeout")
            else:
                self.tasks.later(session, self.config.idle_timeout - idle,
                                 lambda: self._idle_check(session), "session-idle-timer")

    def _audit_failed(self, exc: Exception) -> None:
        """Fail closed: end every channel we can no longer account for."""
        for relay in list(self.relays.values()):
            self.tasks.spawn(self._fail_channel(relay.channel), "fail-closed")

    async def _fail_channel(self, channel: Channel) -> None:
        try:
            await self.close_channel(channel, "broker", "audit log unavailable: channel closed",
                                     failed=True)
        except AuditUnavailable:
            pass

    async def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            try:
                await self.end_session(session, "broker", "broker shutting down")
            except TetherError:
                pass
        await self.flush_failure_summary()
        self.tasks.cancel_all()
