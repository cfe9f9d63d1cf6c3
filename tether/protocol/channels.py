"""The capability table and the channel-kind table: the one place a kind is declared.

Both sides hold this module. The customer's client words every consent prompt
from its own copy of these tables (``consent.WORDING``), never from text the
broker sends; the broker picks the codec and recorder of a kind from its row;
the console lists the kinds the table names (``vocabulary`` exports it).

A **capability** is what the customer can allow. Some open a channel (``shell``
opens a ``terminal``); some are added to an open channel later
(``screen.control`` on a ``screen``); some open none (sending the machine
summary). A **channel kind** names the capability that opens it, those it can
add later, its frame-size limit and its recorder kind.

Adding a kind: one :class:`Capability` row if it needs a new yes, one
:class:`ChannelKind` row here, then a codec in ``broker/channels/<kind>.py``, a
recorder in ``broker/recording/``, a client module in ``client/channels/`` and a
page module in ``web/src/channels/<kind>.js``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ProtocolError

KIB = 1024
MIB = 1024 * KIB

CONTROL_MAX_BYTES = 64 * KIB
TERMINAL_MAX_BYTES = 1 * MIB
SCREEN_MAX_BYTES = 16 * MIB


@dataclass(frozen=True)
class Capability:
    """Something the customer can allow."""

    name: str
    #: key of the prompt in ``consent.WORDING`` (the client's own wording)
    wording: str
    #: the customer may take it back while its channel stays open
    withdrawable: bool
    #: how a sentence to the customer names it ("… asked for {noun}")
    noun: str = ""
    #: the console's button for it ("" when the technician never asks for it alone)
    label: str = ""


@dataclass(frozen=True)
class ChannelKind:
    """One kind of data channel."""

    name: str
    #: the capability whose yes opens a channel of this kind
    opens: str
    #: capabilities that can be added to an open channel, each with its own yes
    adds: tuple[str, ...]
    #: largest WebSocket message on this kind's relay, either direction
    max_frame: int
    #: recorder kind (``broker/recording/<recorder>.py``)
    recorder: str
    #: False while only declared: requests for it are refused as unknown
    available: bool = True


CAPABILITIES: dict[str, Capability] = {c.name: c for c in (
    Capability("shell", "shell", withdrawable=False, noun="a shell", label="Open shell"),
    Capability("screen.view", "screen.view", withdrawable=False,
               noun="a view of your screen", label="View screen"),
    Capability("screen.control", "screen.control", withdrawable=True,
               noun="control of your mouse and keyboard", label="Request control"),
    Capability("clipboard", "clipboard", withdrawable=True, noun="access to your clipboard"),
    Capability("machine.summary", "machine.summary", withdrawable=False,
               noun="the summary of this computer"),
    Capability("health.check", "health.check", withdrawable=False, noun="a health check"),
)}

KINDS: dict[str, ChannelKind] = {k.name: k for k in (
    ChannelKind("terminal", opens="shell", adds=(), max_frame=TERMINAL_MAX_BYTES,
                recorder="cast"),
    # Declared for the screen issue; no codec, client module or page module yet.
    ChannelKind("screen", opens="screen.view", adds=("screen.control", "clipboard"),
                max_frame=SCREEN_MAX_BYTES, recorder="rfb", available=False),
)}

#: the largest frame of any available kind: the relay endpoints' receive limit before
#: the kind is known (after pairing the pump holds each frame to its own kind's limit)
MAX_FRAME = max(k.max_frame for k in KINDS.values() if k.available)


def kind(name: object) -> ChannelKind:
    """The row of an available kind, or a :class:`ProtocolError`."""
    row = KINDS.get(name) if isinstance(name, str) else None
    if row is None or not row.available:
        raise ProtocolError("unknown channel kind")
    return row


def capability(name: object) -> Capability:
    row = CAPABILITIES.get(name) if isinstance(name, str) else None
    if row is None:
        raise ProtocolError("unknown capability")
    return row


def opened_by(capabilities: set[str] | frozenset[str]) -> ChannelKind | None:
    """The available kind one of ``capabilities`` opens (a channel's allowed set)."""
    for row in KINDS.values():
        if row.available and row.opens in capabilities:
            return row
    return None
