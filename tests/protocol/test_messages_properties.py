"""Properties of control-message parsing (protocol/messages.py) not covered by test_messages.

* which side may send what holds for every value, not only the examples;
* every string field of every message type enforces ``MAX_TEXT``, exactly at the boundary,
  whatever the characters (multi-byte, escaped in JSON);
* the frame limit (``CONTROL_MAX_BYTES``, and ``loads_object``'s own limit) is exact, and is
  the same limit in UTF-8 bytes whether the frame is given as text or as bytes;
* any message either round-trips or, when its JSON is over the frame limit, is refused as
  ``MessageTooBig`` — never anything else;
* mutating one field of a valid message to any JSON value gives the message or a
  ``ProtocolError``, never another exception or a value of the wrong type.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, get_type_hints

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tether.protocol import messages as m
from tether.protocol.errors import MessageTooBig, ProtocolError, UnknownMessage

TYPES = sorted(m.Message._registry.values(), key=lambda c: c.type)
HINTS = {cls: get_type_hints(cls) for cls in TYPES}
FIELDS = {cls: [f.name for f in dataclasses.fields(cls)] for cls in TYPES}
STRING_FIELDS = [(cls, name) for cls in TYPES for name in FIELDS[cls] if HINTS[cls][name] is str]
DIRECTIONS = {"client": m.CLIENT_MESSAGES, "broker": m.BROKER_MESSAGES}
#: one-character strings of every UTF-8 length, and ones JSON must escape
CHARS = ["x", "é", "日", "🙂", "\x00", '"', "\\", "\u2028", "\u202e"]
SMALL = {"str": "v", "bool": True, "int": 1, "float": 1.5}


def small(cls: type[m.Message]) -> dict[str, Any]:
    return {name: SMALL[HINTS[cls][name].__name__] for name in FIELDS[cls]}


def values_for(hint: Any, text: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers()
    if hint is float:
        return st.floats(min_value=-1e11, max_value=1e11, allow_nan=False)
    return text


def messages(text: st.SearchStrategy[str] = st.text(max_size=50)) -> st.SearchStrategy[m.Message]:
    return st.one_of(*[st.builds(cls, **{n: values_for(HINTS[cls][n], text) for n in FIELDS[cls]})
                       for cls in TYPES])


def outcome(data: str | bytes, allowed: frozenset[type[m.Message]] | None = None) -> Any:
    try:
        return m.parse(data, allowed)
    except ProtocolError as exc:
        return type(exc)


@given(messages(), st.sampled_from(sorted(DIRECTIONS)))
def test_each_side_accepts_exactly_its_own_message_types(msg: m.Message, side: str) -> None:
    allowed = DIRECTIONS[side]
    for data in (msg.to_json(), msg.to_json().encode()):
        if type(msg) in allowed:
            assert m.parse(data, allowed) == msg
        else:
            with pytest.raises(UnknownMessage):
                m.parse(data, allowed)


@given(st.sampled_from(STRING_FIELDS), st.integers(min_value=-2, max_value=2),
       st.sampled_from(CHARS))
def test_every_string_field_is_limited_to_max_text_characters(
        field: tuple[type[m.Message], str], delta: int, ch: str) -> None:
    cls, name = field
    value = ch * (m.MAX_TEXT + delta)
    body = {"type": cls.type, **small(cls), name: value}
    for data in (json.dumps(body), json.dumps(body, ensure_ascii=False).encode()):
        if delta <= 0:
            msg = m.parse(data)
            assert getattr(msg, name) == value
        else:
            with pytest.raises(ProtocolError, match="bad field"):
                m.parse(data)


@given(messages(st.text(alphabet=st.characters(max_codepoint=127), max_size=50)),
       st.integers(min_value=-3, max_value=3), st.booleans())
def test_the_frame_limit_is_exact(msg: m.Message, delta: int, as_bytes: bool) -> None:
    text = msg.to_json()  # ASCII: as many bytes as characters
    padding = m.CONTROL_MAX_BYTES + delta - len(text)
    if padding < 0:
        return
    padded = text + " " * padding
    data: str | bytes = padded.encode() if as_bytes else padded
    if delta > 0:
        with pytest.raises(MessageTooBig):
            m.parse(data)
    else:
        assert m.parse(data) == msg


@given(st.integers(min_value=2, max_value=200), st.integers(min_value=0, max_value=300),
       st.booleans())
def test_loads_object_limit_is_exact(limit: int, size: int, as_bytes: bool) -> None:
    text = '{"a":"' + "x" * max(0, size - 8) + '"}'
    data: str | bytes = text.encode() if as_bytes else text
    if len(text) > limit:
        with pytest.raises(MessageTooBig):
            m.loads_object(data, limit)
    else:
        assert m.loads_object(data, limit) == json.loads(text)


#: (nearly) the field limit of 4-byte characters: four such fields are over 64 KiB in
#: UTF-8 but only about 16 Ki characters
BIG_TEXT = st.builds(lambda first, n: first + "🙂" * (n - 1), st.sampled_from(["🙂", "😀", "𝄞"]),
                     st.integers(min_value=m.MAX_TEXT - 4, max_value=m.MAX_TEXT))


@settings(max_examples=10, phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.builds(m.SessionDecision, allow=st.booleans(), reason=BIG_TEXT, machine=BIG_TEXT,
                 user=BIG_TEXT, os=BIG_TEXT))
def test_the_frame_limit_counts_utf8_bytes_for_text_frames_too(msg: m.SessionDecision) -> None:
    """``CONTROL_MAX_BYTES`` is a limit in bytes ("control ≤ 64 KiB"): the same frame must
    get the same answer whether the caller hands it over as ``str`` or as ``bytes``."""
    text = msg.to_json()
    assert len(text) < m.CONTROL_MAX_BYTES < len(text.encode())  # characters vs bytes
    assert outcome(text.encode()) is MessageTooBig
    verdict = outcome(text)
    name = verdict.__name__ if isinstance(verdict, type) else f"accepted as {verdict.type}"
    assert name == "MessageTooBig", (
        f"a {len(text.encode())}-byte frame given as text ({len(text)} characters) passes "
        f"the {m.CONTROL_MAX_BYTES}-byte limit: loads_object counts characters, not bytes")


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow,
                                                  HealthCheck.data_too_large])
@given(messages(st.text(alphabet=st.sampled_from(CHARS), max_size=m.MAX_TEXT)))
def test_any_message_round_trips_or_is_too_big(msg: m.Message) -> None:
    """Fields within their limits can still add up to more than one frame (several fields
    of characters JSON escapes six-fold): then, and only then, MessageTooBig."""
    text = msg.to_json()
    if len(text.encode()) > m.CONTROL_MAX_BYTES:
        assert outcome(text.encode()) is MessageTooBig
    else:
        assert m.parse(text) == msg
        assert m.parse(text.encode()) == msg


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=6,
)


@given(st.sampled_from(TYPES), st.data())
def test_one_field_replaced_by_any_json_value(cls: type[m.Message], data: st.DataObject) -> None:
    body = {"type": cls.type, **small(cls)}
    if FIELDS[cls]:
        name = data.draw(st.sampled_from(FIELDS[cls]))
        body[name] = data.draw(JSON)
    for allowed in (None, *DIRECTIONS.values()):
        got = outcome(json.dumps(body), allowed)
        if isinstance(got, type):
            assert issubclass(got, ProtocolError)
            continue
        assert type(got) is cls
        for n in FIELDS[cls]:
            assert type(getattr(got, n)) is HINTS[cls][n], (n, getattr(got, n))
        assert m.parse(got.to_json()) == got


@given(st.sampled_from(TYPES), st.sampled_from(TYPES))
def test_a_message_sent_as_another_type_is_refused_or_exactly_that_type(
        sent: type[m.Message], claimed: type[m.Message]) -> None:
    """The type field decides; fields of another type never slip through."""
    body = {**small(sent), "type": claimed.type}
    got = outcome(json.dumps(body))
    if isinstance(got, type):
        assert issubclass(got, ProtocolError)
    else:
        assert type(got) is claimed
        assert set(small(sent)) <= set(FIELDS[claimed])
