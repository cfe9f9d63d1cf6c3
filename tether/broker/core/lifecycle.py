"""How sessions end: by either side, idle, too long, a lost client, shutdown;
and how a client that dropped for a moment resumes its session.

Ending is never refused: if the audit log cannot be written the session ends
all the same (the log shows the gap, the broker log says why). A short drop
keeps the session (no new code, no new session consent) for the resume
window; its channels end at once, so nothing runs unattended while the
customer is away. Resumes are rate-limited per session (a burst, then one per
``resume_every`` s): a loop of drops cannot fill the session's record, and a
flaky network is only slowed, never cut off.
"""

from __future__ import annotations

import asyncio
import logging
import time

from ...protocol import messages as m
from ...protocol.errors import AuditUnavailable, AuthError, Close, TetherError
from ...protocol.sanitize import clean_text
from ...protocol.states import SessionEvent, SessionState
from ..limits import TokenBucket
from .agents import Agent, Gone, secret_key
from .channels import Channels
from .codebook import ClientCodes
from .context import Context
from .sessions import Session

log = logging.getLogger("tether.core")


class Lifecycle:
    def __init__(self, ctx: Context, channels: Channels, codes: ClientCodes) -> None:
        self.ctx = ctx
        self.channels = channels
        self.codes = codes
        self._resume: dict[str, Session] = {}  # sha256(resume secret) -> session
        config = ctx.config
        self._resumes = TokenBucket(config.resume_burst, 1.0 / max(config.resume_every, 1e-3))

    # --- ending ----------------------------------------------------------------

    async def end(self, session: Session, actor: str, reason: str, *, ip: str | None = None,
                  notify_agent: bool = True) -> None:
        async with session.lock:
            if not await self.end_locked(session, actor, reason, ip=ip,
                                         notify_agent=notify_agent):
                return
        await self._sign("session end")

    async def end_locked(self, session: Session, actor: str, reason: str, *,
                         ip: str | None = None, notify_agent: bool = True) -> bool:
        """End once; False if it had ended already (a second end does nothing)."""
        if not session.live:
            return False
        try:
            await self.ctx.steps.session(session, SessionEvent.END, "session.ended",
                                         actor=actor, ip=ip, shown=reason, must=True,
                                         reason=reason, recordings=list(session.recorded))
        except AuditUnavailable:
            log.error("session ended without its audit event", extra={"session": session.id})
        await self.finish_locked(session, notify_agent=notify_agent)
        return True

    async def _sign(self, reason: str) -> None:
        """Sign the session's record (its channels closed, recordings sealed)."""
        try:
            await self.ctx.audit.checkpoint(reason)
        except AuditUnavailable:
            pass  # logged by the audit log

    async def finish_locked(self, session: Session, *, notify_agent: bool = True) -> None:
        """After the final step: channels closed, client told and let go, index updated."""
        ctx = self.ctx
        ctx.tasks.cancel(session)
        for channel in session.live_channels():
            try:
                await self.channels.close_locked(channel, "broker", "the session ended")
            except AuditUnavailable:
                pass
        self._forget_resume(session)
        agent = ctx.agents.pop(session, None)
        if agent is not None:
            agent.session = None
            if agent.connected and notify_agent:
                try:
                    await agent.send(m.Ended(reason=session.end_reason or "ended"))
                except Gone:
                    log.info("client gone before it heard the end",
                             extra={"session": session.id})
            if agent.connected:
                await agent.close(Close.NORMAL, "session ended")
        ctx.sessions.pop(session.id, None)
        await ctx.persist(session)
        ctx.publish(session)

    def start_timers(self, session: Session) -> None:
        """After the customer's yes: the idle clock runs."""
        self.ctx.tasks.later(session, self.ctx.config.idle_timeout,
                             lambda: self._idle_check(session), "session-idle-timer")

    async def _idle_check(self, session: Session) -> None:
        if not session.live:
            return
        idle = time.monotonic() - session.last_activity
        timeout = self.ctx.config.idle_timeout
        if idle >= timeout - 0.5:
            await self.end(session, "broker", "idle timeout")
        else:
            self.ctx.tasks.later(session, timeout - idle, lambda: self._idle_check(session),
                                 "session-idle-timer")

    async def shutdown(self) -> None:
        for session in list(self.ctx.sessions.values()):
            try:
                await self.end(session, "broker", "broker shutting down")
            except TetherError:
                pass

    # --- the client's connection -------------------------------------------------

    async def agent_gone(self, agent: Agent, reason: str) -> None:
        """The control connection closed (or was replaced by a resumed one)."""
        if not agent.connected:
            return
        agent.connected = False
        self.ctx.tasks.cancel(agent)
        self.codes.left(agent)  # counted in its address's summary if it never had a session
        session = agent.session
        if session is None or not session.live:
            return
        async with session.lock:
            if self.ctx.agents.get(session) is not agent or not session.live:
                return
            if session.state == SessionState.ACTIVE and self.ctx.config.resume_window > 0:
                await self._dropped_locked(session, agent, reason)
                return
            await self.end_locked(session, "client", reason, notify_agent=False)
        await self._sign("session end")

    async def _dropped_locked(self, session: Session, agent: Agent, reason: str) -> None:
        ctx = self.ctx
        for channel in session.live_channels():  # first: nothing runs while they are away
            try:
                await self.channels.close_locked(channel, "broker",
                                                 "the customer's connection dropped")
            except AuditUnavailable:
                pass
        try:
            await ctx.steps.session(session, SessionEvent.DROP, "session.client_lost",
                                    actor="client", ip=agent.ip, must=True, reason=reason)
        except AuditUnavailable:
            pass
        ctx.tasks.later(session, ctx.config.resume_window,
                        lambda: self._resume_expired(session, agent), "resume-window")
        ctx.publish(session)

    async def _resume_expired(self, session: Session, agent: Agent) -> None:
        async with session.lock:
            if not (session.live and self.ctx.agents.get(session) is agent
                    and not agent.connected):
                return
            await self.end_locked(session, "client", "the customer's connection was lost",
                                  notify_agent=False)
        await self._sign("session end")

    # --- resuming ------------------------------------------------------------------

    async def send_resume_token(self, agent: Agent, session: Session) -> None:
        self._forget_resume(session)
        secret = self.ctx.secrets.new_secret()
        self._resume[secret_key(secret)] = session
        await agent.send(m.ResumeToken(secret=secret, window=self.ctx.config.resume_window))

    def _forget_resume(self, session: Session) -> None:
        self._resume = {k: v for k, v in self._resume.items() if v is not session}
        if not session.live:
            self._resumes.forget(session)

    async def _take_turn(self, agent: Agent, session: Session) -> None:
        """Resumes are rate-limited per session, never refused for it: a few drops in a
        row resume at once; a loop of drops (each one audited) waits for its turn."""
        wait = self._resumes.reserve(session)
        if wait <= 0:
            return
        log.info("resume slowed down", extra={"session": session.id, "peer": agent.ip})
        await agent.send(m.Notice(text=f"Reconnecting too often: the session resumes in "
                                       f"{wait:.0f} s."))
        await asyncio.sleep(wait)
        # raises Gone if the connection closed meanwhile (the token is then kept)
        await agent.send(m.Notice(text="Resuming the session now."))

    async def resume(self, agent: Agent, msg: m.Resume) -> None:
        """A client back within the resume window takes its session up again."""
        agent.os = clean_text(msg.os, 64)
        agent.version = clean_text(msg.version, 32)
        key = secret_key(msg.secret)
        session = self._resume.pop(key, None)
        old = self.ctx.agents.get(session) if session else None
        if session is None or not session.live or old is None:
            raise AuthError("this session cannot be resumed")
        try:
            await self._take_turn(agent, session)
        except BaseException:
            # gone while waiting its turn (flaky Wi-Fi drops again): the token was not
            # used, so the next connection can still resume with it
            if session.live and self.ctx.agents.get(session) is old:
                self._resume[key] = session
            raise
        if old.connected:  # half-open: the token shows it is the same client coming back
            await self.agent_gone(old, "replaced by a resumed connection")
            try:
                await old.close(Close.NORMAL, "replaced by a resumed connection")
            except Exception:
                log.info("old connection already gone", extra={"session": session.id})
        async with session.lock:
            if not session.live or self.ctx.agents.get(session) is not old:
                raise AuthError("this session cannot be resumed")
            await self.ctx.steps.session(session, SessionEvent.RESUME, "session.resumed",
                                         actor="client", ip=agent.ip)
            agent.session = session
            self.ctx.agents[session] = agent
            await agent.send(m.Resumed(session=session.id))
            await self.send_resume_token(agent, session)
            self.ctx.publish(session)
