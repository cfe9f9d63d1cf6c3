"""Control-channel messages: frozen dataclasses, strict parsing, JSON framing.

A message on the wire is one JSON object per WebSocket text frame with a
``type`` field. Parsing is strict: unknown types, unknown or missing fields,
wrong field types and over-long strings are all a :class:`ProtocolError`,
so neither side ever acts on a half-understood message.
"""

from __future__ import annotations

import builtins
import dataclasses
import json
from typing import Any, ClassVar, get_type_hints

from .channels import CONTROL_MAX_BYTES as CONTROL_MAX_BYTES
from .channels import SCREEN_MAX_BYTES as SCREEN_MAX_BYTES
from .channels import TERMINAL_MAX_BYTES as TERMINAL_MAX_BYTES
from .errors import MessageTooBig, ProtocolError, UnknownMessage

MAX_TEXT = 4096  # longest string field in any control message



@dataclasses.dataclass(frozen=True)
class Message:
    """A typed JSON frame. A subclass declared with ``family=True`` starts its own
    registry of types (the terminal controls inside a channel are one such family),
    so one parser serves every JSON frame of the protocol."""

    type: ClassVar[str] = ""
    _registry: ClassVar[dict[str, builtins.type[Message]]] = {}

    def __init_subclass__(cls, family: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if family:
            cls._registry = {}
        if cls.type:
            cls._registry[cls.type] = cls

    def to_json(self) -> str:
        body = {"type": self.type, **dataclasses.asdict(self)}
        return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


# --- client → broker -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Hello(Message):
    type: ClassVar[str] = "hello"
    version: str
    os: str


@dataclasses.dataclass(frozen=True)
class Resume(Message):
    """First frame of a reconnecting client, instead of ``hello``."""

    type: ClassVar[str] = "resume"
    secret: str
    version: str
    os: str


@dataclasses.dataclass(frozen=True)
class SessionDecision(Message):
    """The customer's answer to the session; system details only with a yes."""

    type: ClassVar[str] = "session_decision"
    allow: bool
    reason: str
    machine: str = ""
    user: str = ""
    os: str = ""


@dataclasses.dataclass(frozen=True)
class ChannelDecision(Message):
    type: ClassVar[str] = "channel_decision"
    channel: str
    allow: bool
    reason: str


@dataclasses.dataclass(frozen=True)
class ChannelClosed(Message):
    type: ClassVar[str] = "channel_closed"
    channel: str
    reason: str


@dataclasses.dataclass(frozen=True)
class EndSession(Message):
    type: ClassVar[str] = "end"
    reason: str


@dataclasses.dataclass(frozen=True)
class Heartbeat(Message):
    type: ClassVar[str] = "heartbeat"


# --- broker → client -------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CodeIssued(Message):
    type: ClassVar[str] = "code"
    code: str
    expires_in: float


@dataclasses.dataclass(frozen=True)
class Claimed(Message):
    type: ClassVar[str] = "claimed"
    session: str
    technician: str
    org: str


@dataclasses.dataclass(frozen=True)
class ResumeToken(Message):
    """After the customer's yes: a single-use secret to resume after a short drop."""

    type: ClassVar[str] = "resume_token"
    secret: str
    window: float


@dataclasses.dataclass(frozen=True)
class Resumed(Message):
    type: ClassVar[str] = "resumed"
    session: str


@dataclasses.dataclass(frozen=True)
class ChannelRequest(Message):
    type: ClassVar[str] = "channel_request"
    channel: str
    kind: str
    technician: str
    org: str


@dataclasses.dataclass(frozen=True)
class ChannelReady(Message):
    """After a yes: the client's own single-use secret for the relay."""

    type: ClassVar[str] = "channel_ready"
    channel: str
    secret: str
    cols: int = 80
    rows: int = 24


@dataclasses.dataclass(frozen=True)
class ChannelClose(Message):
    type: ClassVar[str] = "channel_close"
    channel: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Ended(Message):
    type: ClassVar[str] = "ended"
    reason: str


@dataclasses.dataclass(frozen=True)
class Notice(Message):
    """Something the customer should know that needs no answer."""

    type: ClassVar[str] = "notice"
    text: str


@dataclasses.dataclass(frozen=True)
class Refused(Message):
    """The broker will not serve this client (a load refusal is ``Busy``, 4503, instead)."""

    type: ClassVar[str] = "refused"
    reason: str


CLIENT_MESSAGES = frozenset(
    {Hello, Resume, SessionDecision, ChannelDecision, ChannelClosed, EndSession, Heartbeat}
)
BROKER_MESSAGES = frozenset(
    {CodeIssued, Claimed, ResumeToken, Resumed, ChannelRequest, ChannelReady, ChannelClose,
     Ended, Notice, Refused, Heartbeat}
)

_HINTS: dict[type[Message], dict[str, Any]] = {}


def _encodable(text: str) -> bool:
    """False for a lone surrogate (``"\\ud800"`` in JSON), which no UTF-8 can carry."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _check(cls: type[Message], name: str, value: Any) -> Any:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = get_type_hints(cls)
    want = hints[name]
    if want is bool:
        ok = isinstance(value, bool)
    elif want is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        try:
            value = float(value) if ok else value
        except OverflowError:
            ok = False
        ok = ok and value == value and abs(value) < 1e12  # no NaN / inf
    elif want is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str) and len(value) <= MAX_TEXT and _encodable(value)
    if not ok:
        raise ProtocolError(f"bad field {name!r} in {cls.type!r}")
    return value


def check_size(frame: str | bytes, limit: int) -> None:
    """A frame over ``limit`` bytes (text measured in UTF-8) is :class:`MessageTooBig`."""
    size = len(frame)
    if isinstance(frame, str) and size > limit // 4:  # up to 4 UTF-8 bytes a character
        size = len(frame.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise MessageTooBig()


def loads_object(text: str | bytes, limit: int = CONTROL_MAX_BYTES) -> dict[str, Any]:
    """Parse one JSON object, with a size limit and no deep-nesting crash."""
    check_size(text, limit)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("malformed JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError("expected a JSON object")
    return obj


def parse(text: str | bytes, allowed: frozenset[type[Message]] | None = None, *,
          family: type[Message] = Message, limit: int = CONTROL_MAX_BYTES) -> Message:
    """Parse and validate one message of ``family`` (by default a control message);
    a type's ``__post_init__`` may check more than the field types."""
    obj = loads_object(text, limit)
    kind = obj.pop("type", None)
    cls = family._registry.get(kind) if isinstance(kind, str) else None
    if cls is None or (allowed is not None and cls not in allowed):
        raise UnknownMessage(f"unknown message type {str(kind)[:40]!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    extra = set(obj) - set(fields)
    if extra:
        raise ProtocolError(f"unknown field in {cls.type!r}")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if name in obj:
            values[name] = _check(cls, name, obj[name])
        elif f.default is dataclasses.MISSING:
            raise ProtocolError(f"missing field {name!r} in {cls.type!r}")
    return cls(**values)
