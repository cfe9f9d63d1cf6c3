"""The support-session state machine: every transition is in the tables here.

A session starts when a technician redeems a code (``claimed``), becomes
``active`` when the customer says yes, and ends once (``ended``). Each channel
inside it has its own machine: ``requested`` until the customer answers,
``pairing`` after a yes until both ends have presented their secrets,
``open`` while relayed, ``detached`` while the technician's page reloads,
and a final ``refused`` / ``timeout`` / ``closed``. Nothing outside this
module assigns a state.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from ...protocol.errors import Conflict

SESSION_TRANSITIONS: dict[tuple[str, str], str] = {
    ("claimed", "allow"): "active",
    ("claimed", "refuse"): "ended",
    ("claimed", "timeout"): "ended",
    ("claimed", "end"): "ended",
    ("active", "end"): "ended",
}

CHANNEL_TRANSITIONS: dict[tuple[str, str], str] = {
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

CHANNEL_FINAL = frozenset({"refused", "timeout", "closed"})
CHANNEL_KINDS = ("terminal",)


def new_id(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(12)


@dataclass(eq=False)
class Channel:
    session: Session
    kind: str
    cols: int = 80
    rows: int = 24
    id: str = field(default_factory=lambda: new_id("c_"))
    state: str = "requested"
    reason: str | None = None
    created: float = field(default_factory=time.time)
    #: monotonic time by which the viewer must (re)attach, while pairing/detached
    deadline: float | None = None

    def fire(self, event: str) -> str:
        new = CHANNEL_TRANSITIONS.get((self.state, event))
        if new is None:
            raise Conflict(f"channel is {self.state}")
        self.state = new
        return new

    @property
    def live(self) -> bool:
        return self.state not in CHANNEL_FINAL

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "state": self.state, "reason": self.reason}


@dataclass(eq=False)
class Session:
    technician: dict[str, Any]
    client_ip: str
    client_os: str
    id: str = field(default_factory=lambda: new_id("s_"))
    state: str = "claimed"
    consent: str = "pending"
    created: float = field(default_factory=time.time)
    ended: float | None = None
    end_reason: str | None = None
    customer: dict[str, str] | None = None
    channels: dict[str, Channel] = field(default_factory=dict)
    #: refusals per capability; after 3 the client stops asking its customer
    refusals: dict[str, int] = field(default_factory=dict)
    #: channels that have had a recording (listed in the session.ended event)
    recorded: list[str] = field(default_factory=list)
    #: set when an end has begun, so two ends at once (both sides) end it once
    ending: bool = False
    #: False while the customer's client is away within the resume window
    connected: bool = True
    #: monotonic time of the last byte relayed, for the idle timeout
    last_activity: float = field(default_factory=time.monotonic)

    def fire(self, event: str, reason: str | None = None) -> str:
        new = SESSION_TRANSITIONS.get((self.state, event))
        if new is None:
            raise Conflict(f"session is {self.state}")
        self.state = new
        if event == "allow":
            self.consent = "allowed"
        elif event in ("refuse", "timeout"):
            self.consent = "refused" if event == "refuse" else "timeout"
        if new == "ended":
            self.ended = time.time()
            self.end_reason = reason
        return new

    @property
    def live(self) -> bool:
        return self.state != "ended"

    def live_channels(self) -> list[Channel]:
        return [c for c in self.channels.values() if c.live]

    def to_dict(self) -> dict[str, Any]:
        t = self.technician
        return {
            "id": self.id,
            "state": self.state,
            "created": self.created,
            "ended": self.ended,
            "end_reason": self.end_reason,
            "technician": {"name": t["name"], "display_name": t["display_name"], "org": t["org"]},
            "customer": self.customer,
            "consent": self.consent,
            "connected": self.connected,
            "channels": [c.to_dict() for c in self.channels.values()],
        }

    def to_row(self) -> dict[str, Any]:
        c = self.customer or {}
        return {
            "id": self.id,
            "technician_id": self.technician["id"],
            "state": self.state,
            "consent": self.consent,
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
