"""Session and channel records and the one state writer (broker/core/sessions.py).

The tables are ``protocol/states.py``; here every transition goes through
:class:`Steps`, the only code that writes a state, as the core does.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest

from tether.broker.auth.rules import User
from tether.broker.core.sessions import Channel, Session, Steps, row_to_dict
from tether.protocol.errors import AuditUnavailable, Conflict
from tether.protocol.states import (
    CHANNEL_TRANSITIONS,
    SESSION_TRANSITIONS,
    ChannelEvent,
    SessionEvent,
)

TECH = {"id": 7, "name": "alice", "display_name": "Alice Martin", "org": "Acme IT",
        "role": "technician", "password_hash": "$argon2id$secret", "disabled": 0}


class MemoryAudit:
    """Records what Steps audits; ``broken`` makes every append fail."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.failure_hooks: list[Any] = []
        self.broken = False

    async def append(self, action: str, **detail: Any) -> int:
        if self.broken:
            raise AuditUnavailable()
        self.events.append((action, detail))
        return len(self.events)

    async def checkpoint(self, reason: str) -> None:
        return None


AUDIT = MemoryAudit()
STEPS = Steps(AUDIT, pair_timeout=60.0)


def fire(target: Session | Channel, event: str, reason: str | None = None, *,
         must: bool = False) -> str:
    """One step of ``target``'s machine, as the core takes it (lock, audit, apply)."""
    async def step() -> None:
        session = target if isinstance(target, Session) else target.session
        async with session.lock:
            if isinstance(target, Session):
                await STEPS.session(target, SessionEvent(event), f"session.{event}",
                                    actor="test", shown=reason, must=must)
            else:
                await STEPS.channel(target, ChannelEvent(event), f"channel.{event}",
                                    actor="test", shown=reason, must=must)

    asyncio.run(step())
    return str(target.state)

SESSION_EVENTS = ("allow", "refuse", "timeout", "end", "drop", "resume")
CHANNEL_EVENTS = ("allow", "refuse", "timeout", "close", "paired", "detach")

# how to reach each state from the start, by legal events only
SESSION_PATHS = {
    "claimed": [],
    "active": ["allow"],
    "ended": ["end"],
}
CHANNEL_PATHS = {
    "requested": [],
    "pairing": ["allow"],
    "open": ["allow", "paired"],
    "detached": ["allow", "paired", "detach"],
    "refused": ["refuse"],
    "timeout": ["timeout"],
    "closed": ["close"],
}

# the lifecycle of DESIGN.md, written out independently of the module's tables
EXPECTED_SESSION = {
    ("claimed", "allow"): "active",
    ("claimed", "refuse"): "ended",
    ("claimed", "timeout"): "ended",
    ("claimed", "end"): "ended",
    ("active", "end"): "ended",
    ("active", "drop"): "active",  # the customer's client is away (resume window)
    ("active", "resume"): "active",
}
EXPECTED_CHANNEL = {
    ("requested", "allow"): "pairing",
    ("requested", "refuse"): "refused",
    ("requested", "timeout"): "timeout",
    ("requested", "close"): "closed",
    ("pairing", "paired"): "open",
    ("pairing", "close"): "closed",
    ("open", "detach"): "detached",
    ("open", "close"): "closed",
    ("detached", "paired"): "open",
    ("detached", "close"): "closed",
}


def new_session() -> Session:
    return Session(technician=User.of(TECH), client_ip="192.0.2.10", client_os="Linux")


def session_in(state: str) -> Session:
    s = new_session()
    for event in SESSION_PATHS[state]:
        fire(s, event)
    assert s.state == state
    return s


def channel_in(state: str) -> Channel:
    s = session_in("active")
    c = Channel(session=s, kind="terminal")
    s.channels[c.id] = c
    for event in CHANNEL_PATHS[state]:
        fire(c, event)
    assert c.state == state
    return c


def test_the_tables_are_the_designed_lifecycle() -> None:
    assert SESSION_TRANSITIONS == EXPECTED_SESSION
    assert CHANNEL_TRANSITIONS == EXPECTED_CHANNEL


@pytest.mark.parametrize("state", SESSION_PATHS)
@pytest.mark.parametrize("event", SESSION_EVENTS)
def test_session_transitions(state: str, event: str) -> None:
    s = session_in(state)
    want = EXPECTED_SESSION.get((state, event))
    if want is None:
        with pytest.raises(Conflict):
            fire(s, event)
        assert s.state == state  # a refused event changes nothing
    else:
        assert fire(s, event) == want
        assert s.state == want


@pytest.mark.parametrize("state", CHANNEL_PATHS)
@pytest.mark.parametrize("event", CHANNEL_EVENTS)
def test_channel_transitions(state: str, event: str) -> None:
    c = channel_in(state)
    want = EXPECTED_CHANNEL.get((state, event))
    if want is None:
        with pytest.raises(Conflict):
            fire(c, event)
        assert c.state == state
    else:
        assert fire(c, event) == want
        assert c.state == want


def test_conflict_is_http_409() -> None:
    with pytest.raises(Conflict) as info:
        fire(session_in("ended"), "allow")
    assert info.value.http_status == 409 and info.value.close_code == 4409


def test_events_of_the_other_machine_do_not_exist() -> None:
    with pytest.raises(ValueError):
        fire(new_session(), "paired")
    with pytest.raises(ValueError):
        fire(channel_in("open"), "end")


def test_a_refused_step_is_not_audited_and_a_failed_audit_changes_nothing() -> None:
    s = session_in("ended")
    before = len(AUDIT.events)
    with pytest.raises(Conflict):
        fire(s, "allow")
    assert len(AUDIT.events) == before
    c = channel_in("open")
    AUDIT.broken = True
    try:
        with pytest.raises(AuditUnavailable):
            fire(c, "detach")
        assert c.state == "open"  # audit first: no event, no change
        with pytest.raises(AuditUnavailable):
            fire(c, "close", "the audit log is full", must=True)
        assert c.state == "closed" and c.reason == "the audit log is full"  # never refused
    finally:
        AUDIT.broken = False


@pytest.mark.parametrize("event, consent", [("allow", "allowed"), ("refuse", "refused"),
                                            ("timeout", "timeout"), ("end", "pending")])
def test_consent_follows_the_customers_answer(event: str, consent: str) -> None:
    s = new_session()
    assert s.consent == "pending"
    fire(s, event)
    assert s.consent == consent


def test_ending_records_when_and_why_once() -> None:
    s = session_in("active")
    assert s.live and s.ended is None and s.end_reason is None
    before = time.time()
    fire(s, "end", "the customer ended the session")
    assert not s.live
    assert s.ended is not None and s.ended >= before
    assert s.end_reason == "the customer ended the session"
    first = s.ended
    with pytest.raises(Conflict):
        fire(s, "end", "again")
    assert (s.ended, s.end_reason) == (first, "the customer ended the session")


def test_live_channels() -> None:
    s = session_in("active")
    chans = []
    for _ in range(4):
        c = Channel(session=s, kind="terminal")
        s.channels[c.id] = c
        chans.append(c)
    fire(chans[0], "refuse")
    fire(chans[1], "allow")
    fire(chans[2], "allow")
    fire(chans[2], "paired")
    fire(chans[3], "close")
    assert s.live_channels() == [chans[1], chans[2]]
    assert [c.live for c in chans] == [False, True, True, False]


def test_ids_are_unique_and_prefixed() -> None:
    sessions = [new_session() for _ in range(50)]
    assert len({s.id for s in sessions}) == 50
    assert all(s.id.startswith("s_") and len(s.id) > 10 for s in sessions)
    chans = [Channel(session=sessions[0], kind="terminal") for _ in range(50)]
    assert len({c.id for c in chans}) == 50
    assert all(c.id.startswith("c_") for c in chans)


# --- the session dict of docs/console-api.md -----------------------------------------

SESSION_KEYS = {"id", "state", "created", "ended", "end_reason", "technician", "customer",
                "consent", "connected", "channels"}
SESSION_STATES = {"waiting", "claimed", "active", "ended"}
CONSENT_STATES = {"pending", "allowed", "refused", "timeout"}
CHANNEL_STATES = {"requested", "refused", "timeout", "pairing", "open", "detached", "closed"}


def check_session_dict(d: dict[str, object]) -> None:
    assert set(d) == SESSION_KEYS
    assert isinstance(d["id"], str) and d["id"].startswith("s_")
    assert d["state"] in SESSION_STATES
    assert isinstance(d["created"], float)
    assert d["ended"] is None or isinstance(d["ended"], float)
    assert d["end_reason"] is None or isinstance(d["end_reason"], str)
    # only what the console shows: never the technician's id or password hash
    assert d["technician"] == {"name": "alice", "display_name": "Alice Martin", "org": "Acme IT"}
    customer = d["customer"]
    assert customer is None or (isinstance(customer, dict)
                                and set(customer) == {"machine", "os", "user"})
    assert d["consent"] in CONSENT_STATES
    assert isinstance(d["channels"], list)
    for ch in d["channels"]:
        assert set(ch) == {"id", "kind", "state", "reason"}
        assert ch["id"].startswith("c_") and ch["kind"] == "terminal"
        assert ch["state"] in CHANNEL_STATES
        assert ch["reason"] is None or isinstance(ch["reason"], str)
    assert json.loads(json.dumps(d)) == d  # plain JSON, as the API sends it


def test_to_dict_of_a_new_session() -> None:
    s = new_session()
    d = s.to_dict()
    check_session_dict(d)
    assert d["state"] == "claimed" and d["consent"] == "pending"
    assert d["customer"] is None and d["channels"] == [] and d["ended"] is None


def test_to_dict_of_a_busy_session() -> None:
    s = session_in("active")
    s.customer = {"machine": "bob-laptop", "os": "Debian 12", "user": "bob"}
    for path in CHANNEL_PATHS.values():
        c = Channel(session=s, kind="terminal")
        s.channels[c.id] = c
        for event in path:
            fire(c, event)
    s.channels[next(iter(s.channels))].reason = "refused by the customer (no)"
    d = s.to_dict()
    check_session_dict(d)
    assert d["customer"] == {"machine": "bob-laptop", "os": "Debian 12", "user": "bob"}
    assert [c["state"] for c in d["channels"]] == list(CHANNEL_PATHS)
    assert [c["id"] for c in d["channels"]] == list(s.channels)
    fire(s, "end", "technician ended the session")
    d = s.to_dict()
    check_session_dict(d)
    assert d["state"] == "ended" and d["end_reason"] == "technician ended the session"
    assert isinstance(d["ended"], float)


@pytest.mark.parametrize("event", ["allow", "refuse", "timeout", "end"])
def test_a_stored_session_has_the_same_shape(event: str) -> None:
    s = new_session()
    fire(s, event, "reason")
    if s.state == "active":
        s.customer = {"machine": "m", "os": "o", "user": "u"}
        fire(s, "end", "done")
    row = s.to_row()
    assert row["technician_id"] == 7
    stored = row_to_dict(row, TECH)
    check_session_dict(stored)
    live = s.to_dict()
    for key in ("id", "state", "end_reason", "customer", "consent", "technician"):
        assert stored[key] == live[key], key
    assert stored["created"] == pytest.approx(live["created"], abs=1e-5)
    assert stored["ended"] == pytest.approx(live["ended"], abs=1e-5)
