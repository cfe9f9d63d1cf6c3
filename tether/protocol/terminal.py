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
import json
from typing import Any, ClassVar, get_type_hints

from .errors import ProtocolError
from .messages import loads_object

MIN_SIZE = 2
MAX_SIZE = 1000
CONTROL_MAX_BYTES = 4096  # a text frame inside a terminal channel
_MAX_REASON = 200
_MAX_OFFSET = 2**63 - 1

_REGISTRY: dict[str, type[Control]] = {}


def clamp(value: int) -> int:
    """A terminal dimension (columns or rows) within what every side accepts."""
    return max(MIN_SIZE, min(value, MAX_SIZE))


@dataclasses.dataclass(frozen=True)
class Control:
    type: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTRY[cls.type] = cls

    def to_json(self) -> str:
        return json.dumps({"type": self.type, **dataclasses.asdict(self)},
                          ensure_ascii=False, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class Resize(Control):
    type: ClassVar[str] = "resize"
    cols: int
    rows: int

    def __post_init__(self) -> None:
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


@dataclasses.dataclass(frozen=True)
class Closed(Control):
    type: ClassVar[str] = "closed"
    reason: str


@dataclasses.dataclass(frozen=True)
class Ack(Control):
    """Output received up to ``offset`` bytes from the start of the channel."""

    type: ClassVar[str] = "ack"
    offset: int


#: which controls each side may receive
TO_CLIENT = frozenset({Resize, Ack})
FROM_CLIENT = frozenset({Echo, Exit})
TO_VIEWER = frozenset({Echo, Exit, Closed})
FROM_VIEWER = frozenset({Resize, Ack})

_HINTS = {cls: get_type_hints(cls) for cls in _REGISTRY.values()}
#: a resize far outside any screen is malformed, not something to clamp
_RESIZE_SANE = 1_000_000


def _valid(cls: type[Control], name: str, value: Any) -> bool:
    want = _HINTS[cls][name]
    if want is bool:
        return isinstance(value, bool)
    if want is int:
        if not isinstance(value, int) or isinstance(value, bool):
            return False
        if cls is Resize:
            return 1 <= value < _RESIZE_SANE
        if cls is Ack:
            return 0 <= value <= _MAX_OFFSET
        return -(2**31) <= value < 2**31
    return isinstance(value, str) and len(value) <= _MAX_REASON


def parse(text: str | bytes, allowed: frozenset[type[Control]]) -> Control:
    """Parse one terminal control; anything unexpected is a :class:`ProtocolError`."""
    obj = loads_object(text, CONTROL_MAX_BYTES)
    kind = obj.pop("type", None)
    cls = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None or cls not in allowed:
        raise ProtocolError("unknown terminal control")
    names = {f.name for f in dataclasses.fields(cls)}
    if set(obj) != names or not all(_valid(cls, n, obj[n]) for n in names):
        raise ProtocolError("bad terminal control")
    return cls(**obj)
