"""Sessions and channels, and the one place their states are written.

The machines themselves are tables in ``protocol/states.py``. Here a
:class:`Session` and its :class:`Channel` records carry their state, and
:class:`Steps` moves them: under the session's lock it checks that the event
is allowed in the current state, appends the audit event, and only then
applies it (the state, its reason, its deadline, the consent ledger). Nothing
else assigns a state, and because every step of a session holds its lock, no
other step can change the state between the audit write and the change
("audit, then check again" is gone).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ...protocol.channels import KINDS
from ...protocol.consent import Ledger
from ...protocol.errors import AuditUnavailable
from ...protocol.states import (
    CHANNEL_ATTACHABLE,
    CHANNEL_FINAL,
    SESSION_CONSENT,
    ChannelEvent,
    ChannelState,
    Consent,
    SessionEvent,
    SessionState,
    next_channel,
    next_session,
)
from ..audit.actions import AuditSink
from ..auth.rules import User


def new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(12)


@dataclass(eq=False)
class Channel:
    session: Session
    kind: str
    cols: int = 80
    rows: int = 24
    id: str = field(default_factory=lambda: new_id("c_"))
    state: ChannelState = ChannelState.REQUESTED
    reason: str | None = None
    created: float = field(default_factory=time.time)
    #: monotonic time by which an end must (re)attach, while pairing/detached
    deadline: float | None = None

    @property
    def capability(self) -> str:
        return KINDS[self.kind].opens

    @property
    def live(self) -> bool:
        return self.state not in CHANNEL_FINAL

    @property
    def attachable(self) -> bool:
        return self.state in CHANNEL_ATTACHABLE

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": str(self.state),
                "reason": self.reason}


@dataclass(eq=False)
class Session:
    technician: User
    client_ip: str
    client_os: str
    id: str = field(default_factory=lambda: new_id("s_"))
    state: SessionState = SessionState.CLAIMED
    consent: Consent = Consent.PENDING
    created: float = field(default_factory=time.time)
    ended: float | None = None
    end_reason: str | None = None
    customer: dict[str, str] | None = None
    channels: dict[str, Channel] = field(default_factory=dict)
    #: the customer's decisions, mirrored (after MAX_REFUSALS the broker stops asking)
    ledger: Ledger = field(default_factory=Ledger)
    #: channels that have had a recording (listed in the session.ended event)
    recorded: list[str] = field(default_factory=list)
    #: False while the customer's client is away within the resume window
    connected: bool = True
    #: monotonic time of the last byte relayed, for the idle timeout
    last_activity: float = field(default_factory=time.monotonic)
    #: every step of this session and its channels holds it
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def live(self) -> bool:
        return self.state != SessionState.ENDED

    def live_channels(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.live]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": str(self.state),
            "created": self.created,
            "ended": self.ended,
            "end_reason": self.end_reason,
            "technician": self.technician.public(),
            "customer": self.customer,
            "consent": str(self.consent),
            "connected": self.connected,
            "channels": [c.to_dict() for c in self.channels.values()],
        }

    def to_row(self) -> dict[str, Any]:
        c = self.customer or {}
        return {
            "id": self.id,
            "technician_id": self.technician.id,
            "state": str(self.state),
            "consent": str(self.consent),
            "created_us": int(self.created * 1e6),
            "ended_us": int(self.ended * 1e6) if self.ended else None,
            "end_reason": self.end_reason,
            "client_ip": self.client_ip,
            "machine": c.get("machine"),
            "os": c.get("os"),
            "customer_user": c.get("user"),
        }


def row_to_dict(row: dict[str, Any], technician: dict[str, Any]) -> dict[str, Any]:
    """A stored (ended) session in the same shape as :meth:`Session.to_dict`."""
    customer = None
    if row.get("machine") is not None:
        customer = {"machine": row["machine"], "os": row["os"], "user": row["customer_user"]}
    return {
        "id": row["id"],
        "state": row["state"],
        "created": row["created_us"] / 1e6,
        "ended": row["ended_us"] / 1e6 if row["ended_us"] else None,
        "end_reason": row["end_reason"],
        "technician": {k: technician[k] for k in ("name", "display_name", "org")},
        "customer": customer,
        "consent": row["consent"],
        "connected": False,
        "channels": [],
    }


class Steps:
    """Check, audit, apply: the only writer of session and channel state.

    The caller holds ``session.lock``. ``action`` is the audit event (None for
    a step with no event of its own), ``detail`` its fields, ``shown`` the reason
    the console shows (a session's end reason, a channel's reason). With
    ``must=True`` the step is applied even when the audit log cannot be
    written (ending and closing are never refused: what cannot be recorded
    must stop), and the error is re-raised after.
    """

    def __init__(self, audit: AuditSink, pair_timeout: float) -> None:
        self.audit = audit
        self.pair_timeout = pair_timeout

    async def session(self, session: Session, event: SessionEvent, action: str | None, *,
                      actor: str, ip: str | None = None, shown: str | None = None,
                      customer: dict[str, str] | None = None, must: bool = False,
                      **detail: Any) -> None:
        assert session.lock.locked(), "a step needs the session's lock"
        new = next_session(session.state, event)  # Conflict: nothing is audited
        try:
            if action is not None:
                await self.audit.append(action, actor=actor, ip=ip, session_id=session.id,
                                        **detail)
        except AuditUnavailable:
            if not must:
                raise
            self._apply_session(session, event, new, shown, customer)
            raise
        self._apply_session(session, event, new, shown, customer)

    @staticmethod
    def _apply_session(session: Session, event: SessionEvent, new: SessionState,
                       reason: str | None, customer: dict[str, str] | None) -> None:
        session.state = new
        session.consent = SESSION_CONSENT.get(event, session.consent)
        if customer is not None:
            session.customer = customer
        if event == SessionEvent.DROP:
            session.connected = False
        elif event == SessionEvent.RESUME:
            session.connected = True
        if new == SessionState.ENDED:
            session.ended = time.time()
            session.end_reason = reason

    async def channel(self, channel: Channel, event: ChannelEvent, action: str | None, *,
                      actor: str, ip: str | None = None, shown: str | None = None,
                      by_customer: bool = False, must: bool = False, **detail: Any) -> None:
        """``shown``: the reason the console shows; ``by_customer``: a refusal the
        customer made (it counts towards MAX_REFUSALS)."""
        session = channel.session
        assert session.lock.locked(), "a step needs the session's lock"
        new = next_channel(channel.state, event)
        try:
            if action is not None:
                await self.audit.append(action, actor=actor, ip=ip, session_id=session.id,
                                        channel=channel.id, **detail)
        except AuditUnavailable:
            if not must:
                raise
            self._apply_channel(channel, event, new, shown, by_customer)
            raise
        self._apply_channel(channel, event, new, shown, by_customer)

    def _apply_channel(self, channel: Channel, event: ChannelEvent, new: ChannelState,
                       reason: str | None, by_customer: bool) -> None:
        ledger = channel.session.ledger
        channel.state = new
        if reason is not None:
            channel.reason = reason
        if new in CHANNEL_ATTACHABLE:  # the pairing clock starts at the yes / the detach
            channel.deadline = time.monotonic() + self.pair_timeout
        else:
            channel.deadline = None
        if event == ChannelEvent.ALLOW:
            ledger.decide(channel.capability, channel.id, True)
        elif event == ChannelEvent.REFUSE and by_customer:
            ledger.decide(channel.capability, channel.id, False)
        if not channel.live:
            ledger.closed(channel.id)
