"""Session codes: issuing them to clients, and redeeming them for technicians.

Limits answer clearly: new and waiting clients per source address (the
client is told the broker is busy and retries, see ``codebook.py``),
redemption failures per technician and per address (429 with the wait), and a
global failure rate that slows every redemption down and alerts instead of
locking everyone out. Failures are audited as one summary per technician,
address and window, never one row per try. A mistyped code is caught by its
check digit, and a code that was live a moment ago (read out after it was
renewed, or used) is recognised as stale: neither costs an attempt, so the
failure budget is left for real guesses and can be small.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from ...protocol import codes as code_format
from ...protocol import messages as m
from ...protocol.errors import BadCode, Conflict, Forbidden, RateLimited
from ...protocol.sanitize import clean_text
from ..auth.rules import User, may_request_channels
from ..limits import SlidingWindow, address_key
from .agents import Agent, Gone
from .codebook import ClientCodes
from .consent import Consent
from .context import Context
from .lifecycle import Lifecycle
from .sessions import Session

log = logging.getLogger("tether.core")
STALE = "That code is not valid any more — ask for the code the customer sees now"


class Redemption:
    def __init__(self, ctx: Context, codes: ClientCodes, lifecycle: Lifecycle,
                 consent: Consent) -> None:
        self.ctx = ctx
        self.codes = codes
        self.lifecycle = lifecycle
        self.consent = consent
        config = ctx.config
        self._user_failures = SlidingWindow(config.redeem_failures_per_user, config.fail_window)
        self._ip_failures = SlidingWindow(config.redeem_failures_per_ip,
                                          min(config.ip_fail_window, config.fail_window))
        self._global_failures = SlidingWindow(10**9, 60.0)
        self._failure_summary: Counter[tuple[str, str]] = Counter()

    # --- clients -----------------------------------------------------------------

    async def hello(self, agent: Agent, hello: m.Hello) -> None:
        agent.os = clean_text(hello.os, 64)
        agent.version = clean_text(hello.version, 32)
        self.codes.admit(agent)  # raises Busy; counted in the address's summary either way
        await self.issue_code(agent)

    async def issue_code(self, agent: Agent) -> None:
        if not agent.connected or agent.session is not None:
            return
        self.codes.book.revoke(agent)
        ttl = self.ctx.config.code_ttl
        await self.ctx.audit.append("code.issued", actor="client", ip=agent.ip, ttl_s=ttl)
        if not agent.connected:  # gone during the write: no code, no renewal timer
            return
        code = self.codes.book.issue(agent)
        await agent.send(m.CodeIssued(code=code, expires_in=ttl))
        self.ctx.tasks.later(agent, ttl, lambda: self.issue_code(agent), "code-renewal")

    # --- technicians ---------------------------------------------------------------

    async def redeem(self, user: User, typed: str, ip: str) -> Session:
        if not may_request_channels(user):
            raise Forbidden("only technicians can connect to a customer")
        code = code_format.normalize(typed)  # a typo is caught here and costs no attempt
        self._check_limits(user, ip)
        if self._global_failures.count(None) > self.ctx.config.global_failures_per_min:
            log.warning("global code-failure rate exceeded: slowing redemptions",
                        extra={"user": user.name, "peer": ip})
            await asyncio.sleep(self.ctx.config.global_slowdown)
            self._check_limits(user, ip)  # parallel tries must not all slip through the sleep
        try:
            agent = self.codes.book.redeem(code)
        except BadCode:
            if self.codes.book.was_live(code):
                raise BadCode(STALE) from None
            self._user_failures.hit(user.id)
            self._ip_failures.hit(address_key(ip))
            self._global_failures.hit(None)
            self._note_failure(user, ip)
            raise
        if not agent.connected or agent.session is not None:
            raise BadCode()
        return await self._claim(user, agent, ip)

    def _check_limits(self, user: User, ip: str) -> None:
        mine = self._user_failures.retry_after(user.id)
        theirs = self._ip_failures.retry_after(address_key(ip))
        if mine > 0 or theirs > 0:
            self._note_failure(user, ip)
            raise RateLimited(max(mine, theirs), None if theirs > mine else (
                f"Too many attempts — try again in {RateLimited.wait_text(mine)},"
                " or ask an admin to clear your code-entry limit"))

    def blocked_for(self, user_id: int) -> float:
        """Seconds until this technician may enter a code again (0: not blocked)."""
        return self._user_failures.retry_after(user_id)

    def clear_failures(self, user_id: int) -> None:
        self._user_failures.clear(user_id)

    async def _claim(self, user: User, agent: Agent, ip: str) -> Session:
        ctx = self.ctx
        session = Session(technician=user, client_ip=agent.ip, client_os=agent.os)
        async with session.lock:
            await ctx.audit.append("session.claimed", actor=user.name, ip=ip,
                                   session_id=session.id, client_ip=agent.ip,
                                   client_os=agent.os)
            agent.session = session
            ctx.sessions[session.id] = session
            ctx.agents[session] = agent
            ctx.tasks.cancel(agent)  # no code renewal while it is claimed
            self.codes.release(agent)  # no longer waiting: counts against no limit
            await ctx.persist(session)
            try:
                await agent.send(m.Claimed(session=session.id, technician=user.display_name,
                                           org=user.org))
            except Gone as exc:
                await self.lifecycle.end_locked(session, "client",
                                                "the customer's client disconnected",
                                                notify_agent=False)
                raise Conflict("the customer's client disconnected") from exc
            ctx.tasks.later(session, ctx.config.consent_wait,
                            lambda: self.consent.session_expired(session),
                            "session-consent-timer")
            ctx.tasks.later(session, ctx.config.max_session,
                            lambda: self.lifecycle.end(session, "broker",
                                                       "maximum session length"),
                            "session-max-timer")
            ctx.publish(session)
        return session

    def _note_failure(self, user: User, ip: str) -> None:
        self._failure_summary[(user.name, ip)] += 1

    async def flush_summaries(self) -> None:
        """One audit event per (technician, address) and window, never one per try;
        and one per address for the clients that came and went without a session."""
        window = self.ctx.config.summary_window
        summary, self._failure_summary = self._failure_summary, Counter()
        for (name, ip), count in summary.items():
            await self.ctx.audit.append("code.redeem_failed", actor=name, ip=ip, count=count,
                                        window_s=window)
        await self.codes.arrivals.flush(self.ctx.audit, window)
