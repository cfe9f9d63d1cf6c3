"""The terminal sub-protocol, inside a ``terminal`` channel's relay.

Binary frames are bytes (output towards the viewer, input towards the PTY).
Text frames are these small JSON controls, one parser for every side:

* viewer → client: ``resize``;
* client → viewer: ``echo`` (the PTY's echo flag, for hiding passwords from
  the recording), ``exit`` (the shell's exit status);
* broker → viewer: ``closed`` (why the broker ended the channel);
* ``ack``: reserved for resuming a live shell after a network drop: the byte
  offset of the output received so far, so the sender can resend from there.
  Parsed and validated today; no side sends it yet.

Sizes are clamped, never refused: :func:`clamp` is the one rule.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from . import messages
from .errors import MessageTooBig, ProtocolError, UnknownMessage
from .messages import Message

MIN_SIZE = 2
MAX_SIZE = 1000
CONTROL_MAX_BYTES = 4096  # a text frame inside a terminal channel
_MAX_REASON = 200
_MAX_OFFSET = 2**63 - 1

#: a resize far outside any screen is malformed, not something to clamp
_RESIZE_SANE = 1_000_000


def clamp(value: int) -> int:
    """A terminal dimension (columns or rows) within what every side accepts."""
    return max(MIN_SIZE, min(value, MAX_SIZE))


def _require(ok: bool) -> None:
    if not ok:
        raise ProtocolError("bad terminal control")


@dataclasses.dataclass(frozen=True)
class Control(Message, family=True):
    """A terminal control: its own family of messages, parsed by the one parser."""


@dataclasses.dataclass(frozen=True)
class Resize(Control):
    type: ClassVar[str] = "resize"
    cols: int
    rows: int

    def __post_init__(self) -> None:
        _require(1 <= self.cols < _RESIZE_SANE and 1 <= self.rows < _RESIZE_SANE)
        object.__setattr__(self, "cols", clamp(self.cols))
        object.__setattr__(self, "rows", clamp(self.rows))


@dataclasses.dataclass(frozen=True)
class Echo(Control):
    type: ClassVar[str] = "echo"
    on: bool


@dataclasses.dataclass(frozen=True)
class Exit(Control):
    type: ClassVar[str] = "exit"
    code: int

    def __post_init__(self) -> None:
        _require(-(2**31) <= self.code < 2**31)


@dataclasses.dataclass(frozen=True)
class Closed(Control):
    type: ClassVar[str] = "closed"
    reason: str

    def __post_init__(self) -> None:
        _require(len(self.reason) <= _MAX_REASON)


@dataclasses.dataclass(frozen=True)
class Ack(Control):
    """Output received up to ``offset`` bytes from the start of the channel."""

    type: ClassVar[str] = "ack"
    offset: int

    def __post_init__(self) -> None:
        _require(0 <= self.offset <= _MAX_OFFSET)


#: which controls each side may receive
TO_CLIENT = frozenset({Resize, Ack})
FROM_CLIENT = frozenset({Echo, Exit})
TO_VIEWER = frozenset({Echo, Exit, Closed})
FROM_VIEWER = frozenset({Resize, Ack})


def parse(text: str | bytes, allowed: frozenset[type[Control]]) -> Control:
    """Parse one terminal control; anything unexpected is a :class:`ProtocolError`."""
    try:
        control = messages.parse(text, frozenset(allowed), family=Control,
                                 limit=CONTROL_MAX_BYTES)
    except MessageTooBig:
        raise
    except UnknownMessage as exc:
        raise ProtocolError("unknown terminal control") from exc
    except ProtocolError as exc:
        raise ProtocolError("bad terminal control") from exc
    assert isinstance(control, Control)
    return control


def hidden_label(size: int) -> str:
    """What the recording, the player and the customer's view say of hidden input."""
    return f"hidden input ({size} bytes)"


class HiddenRuns:
    """Input typed while the PTY hides it, counted in runs: one line typed (a run ends
    at CR or LF), or everything until echo comes back. The broker's recording and the
    customer's view split it by this one rule, so both show the same notes."""

    def __init__(self) -> None:
        self.size = 0
        self.count = 0  # runs ended so far

    def add(self, data: bytes) -> int | None:
        """Count a frame of hidden input; the run's size if this frame ended it."""
        self.size += len(data)
        return self.end() if b"\r" in data or b"\n" in data else None

    def end(self) -> int | None:
        """Echo is back (or the channel ends): the run's size, if anything was typed."""
        if not self.size:
            return None
        size, self.size = self.size, 0
        self.count += 1
        return size
