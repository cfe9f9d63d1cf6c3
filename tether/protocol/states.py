"""Session and channel states, the events that move them, and their tables.

Everything that affects the state machines lives here (h11's rule): the
broker's :mod:`tether.broker.core.sessions` applies these tables and nothing
else assigns a state. The console shows :data:`SESSION_LABELS` /
:data:`CHANNEL_LABELS` / :data:`CONSENT_LABELS` (exported to the templates and
the page scripts by :mod:`.vocabulary`).

A session starts when a technician redeems a code (``claimed``), becomes
``active`` when the customer says yes, and ends once (``ended``). Each channel
inside it is ``requested`` until the customer answers, ``pairing`` after a yes
until both ends have presented their secrets, ``open`` while relayed,
``detached`` while the technician's page reloads, and ends ``refused`` /
``timeout`` / ``closed``.
"""

from __future__ import annotations

from enum import StrEnum

from .errors import Conflict


class SessionState(StrEnum):
    CLAIMED = "claimed"
    ACTIVE = "active"
    ENDED = "ended"


class SessionEvent(StrEnum):
    ALLOW = "allow"
    REFUSE = "refuse"
    TIMEOUT = "timeout"
    END = "end"
    #: the customer's connection dropped; the session waits for a resume
    DROP = "drop"
    #: the customer's client came back within the resume window
    RESUME = "resume"


class Consent(StrEnum):
    """The customer's answer to the session itself."""

    PENDING = "pending"
    ALLOWED = "allowed"
    REFUSED = "refused"
    TIMEOUT = "timeout"


class ChannelState(StrEnum):
    REQUESTED = "requested"
    PAIRING = "pairing"
    OPEN = "open"
    DETACHED = "detached"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    CLOSED = "closed"


class ChannelEvent(StrEnum):
    ALLOW = "allow"
    REFUSE = "refuse"
    TIMEOUT = "timeout"
    PAIRED = "paired"
    DETACH = "detach"
    CLOSE = "close"


S, SE, C, CE = SessionState, SessionEvent, ChannelState, ChannelEvent

SESSION_TRANSITIONS: dict[tuple[SessionState, SessionEvent], SessionState] = {
    (S.CLAIMED, SE.ALLOW): S.ACTIVE,
    (S.CLAIMED, SE.REFUSE): S.ENDED,
    (S.CLAIMED, SE.TIMEOUT): S.ENDED,
    (S.CLAIMED, SE.END): S.ENDED,
    (S.ACTIVE, SE.END): S.ENDED,
    (S.ACTIVE, SE.DROP): S.ACTIVE,
    (S.ACTIVE, SE.RESUME): S.ACTIVE,
}

#: what the session's consent becomes with an event (other events leave it)
SESSION_CONSENT: dict[SessionEvent, Consent] = {
    SE.ALLOW: Consent.ALLOWED,
    SE.REFUSE: Consent.REFUSED,
    SE.TIMEOUT: Consent.TIMEOUT,
}

CHANNEL_TRANSITIONS: dict[tuple[ChannelState, ChannelEvent], ChannelState] = {
    (C.REQUESTED, CE.ALLOW): C.PAIRING,
    (C.REQUESTED, CE.REFUSE): C.REFUSED,
    (C.REQUESTED, CE.TIMEOUT): C.TIMEOUT,
    (C.REQUESTED, CE.CLOSE): C.CLOSED,
    (C.PAIRING, CE.PAIRED): C.OPEN,
    (C.PAIRING, CE.CLOSE): C.CLOSED,
    (C.OPEN, CE.DETACH): C.DETACHED,
    (C.OPEN, CE.CLOSE): C.CLOSED,
    (C.DETACHED, CE.PAIRED): C.OPEN,
    (C.DETACHED, CE.CLOSE): C.CLOSED,
}

CHANNEL_FINAL = frozenset({C.REFUSED, C.TIMEOUT, C.CLOSED})
#: waiting for an end to (re)attach: the pairing clock runs
CHANNEL_ATTACHABLE = frozenset({C.PAIRING, C.DETACHED})


def next_session(state: SessionState, event: SessionEvent) -> SessionState:
    new = SESSION_TRANSITIONS.get((state, event))
    if new is None:
        raise Conflict(f"session is {state}")
    return new


def next_channel(state: ChannelState, event: ChannelEvent) -> ChannelState:
    new = CHANNEL_TRANSITIONS.get((state, event))
    if new is None:
        raise Conflict(f"channel is {state}")
    return new


SESSION_LABELS: dict[str, str] = {
    "waiting": "Waiting",
    S.CLAIMED: "Awaiting consent",
    S.ACTIVE: "Active",
    S.ENDED: "Ended",
}

CONSENT_LABELS: dict[str, str] = {
    Consent.PENDING: "waiting for the customer",
    Consent.ALLOWED: "allowed",
    Consent.REFUSED: "refused",
    Consent.TIMEOUT: "refused (no answer)",
}

CHANNEL_LABELS: dict[str, str] = {
    C.REQUESTED: "waiting for the customer",
    C.REFUSED: "refused",
    C.TIMEOUT: "refused (no answer)",
    C.PAIRING: "allowed — connecting",
    C.OPEN: "open",
    C.DETACHED: "allowed — detached",
    C.CLOSED: "closed",
}
