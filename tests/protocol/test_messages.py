"""Control-channel messages (protocol/messages.py): strict parsing, JSON in, values out."""

from __future__ import annotations

import dataclasses
import json
from typing import Any, get_type_hints

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.protocol import messages as m
from tether.protocol.errors import MessageTooBig, ProtocolError, UnknownMessage

EXAMPLES: list[m.Message] = [
    m.Hello(version="0.1.0", os="Linux 6.1"),
    m.Resume(secret="r3sume", version="0.1.0", os="Linux"),
    m.ResumeToken(secret="r3sume", window=30.0),
    m.Resumed(session="s_xyz"),
    m.SessionDecision(allow=True, reason="yes", machine="bob-laptop", user="bob", os="Debian"),
    m.SessionDecision(allow=False, reason="no"),
    m.ChannelDecision(channel="c_abc", allow=True, reason="yes"),
    m.ChannelClosed(channel="c_abc", reason="exit 0"),
    m.EndSession(reason="customer ended"),
    m.Heartbeat(),
    m.CodeIssued(code="123456789", expires_in=600.0),
    m.Claimed(session="s_xyz", technician="Alice Martin", org="Acme IT"),
    m.ChannelRequest(channel="c_abc", kind="terminal", technician="Alice Martin", org="Acme IT"),
    m.ChannelReady(channel="c_abc", secret="s3cr3t", cols=132, rows=43),
    m.ChannelReady(channel="c_abc", secret="s3cr3t"),
    m.ChannelClose(channel="c_abc", reason="technician closed it"),
    m.Ended(reason="technician ended the session"),
    m.Refused(reason="too many live codes"),
    m.Notice(text="the broker cannot record a shell now"),
    m.Hello(version="é — 日本語 🙂", os="\u202e RTL in a field is carried, not parsed"),
]
ALL_TYPES = set(m.Message._registry.values())


def test_examples_cover_every_message_type() -> None:
    assert {type(e) for e in EXAMPLES} == ALL_TYPES
    assert m.CLIENT_MESSAGES | m.BROKER_MESSAGES == ALL_TYPES


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda e: type(e).__name__)
def test_every_message_round_trips(msg: m.Message) -> None:
    text = msg.to_json()
    assert json.loads(text)["type"] == msg.type
    assert m.parse(text) == msg
    assert m.parse(text.encode()) == msg
    assert type(m.parse(text)) is type(msg)


def test_to_json_is_one_compact_object() -> None:
    assert m.Heartbeat().to_json() == '{"type":"heartbeat"}'
    assert json.loads(m.Ended(reason="x").to_json()) == {"type": "ended", "reason": "x"}


def _field_strategy(hint: Any) -> st.SearchStrategy[Any]:
    if hint is bool:
        return st.booleans()
    if hint is int:
        return st.integers(min_value=-(2**63), max_value=2**63)
    if hint is float:
        return st.floats(min_value=-1e11, max_value=1e11, allow_nan=False)
    return st.text(max_size=m.MAX_TEXT)


def _message_strategy(cls: type[m.Message]) -> st.SearchStrategy[m.Message]:
    hints = get_type_hints(cls)
    return st.builds(cls, **{f.name: _field_strategy(hints[f.name])
                             for f in dataclasses.fields(cls)})


ANY_MESSAGE = st.one_of(*[_message_strategy(c) for c in sorted(ALL_TYPES, key=lambda c: c.type)])


@given(ANY_MESSAGE)
def test_generated_messages_round_trip(msg: m.Message) -> None:
    assert m.parse(msg.to_json()) == msg
    assert m.parse(msg.to_json().encode()) == msg


# --- strict parsing ----------------------------------------------------------


@pytest.mark.parametrize("text", [
    '{"type":"nope"}',
    '{"type":"Hello","version":"1","os":"x"}',
    '{"version":"1","os":"x"}',
    '{"type":null}',
    '{"type":5}',
    '{"type":["hello"]}',
    '{"type":{"hello":1}}',
    '{"type":""}',
])
def test_unknown_or_missing_type_is_unknown_message(text: str) -> None:
    with pytest.raises(UnknownMessage):
        m.parse(text)


def test_unknown_message_error_is_a_protocol_error_with_close_code_1008() -> None:
    with pytest.raises(ProtocolError) as info:
        m.parse('{"type":"nope"}')
    assert info.value.close_code == 1008
    assert info.value.http_status == 400


def test_unknown_field_is_refused() -> None:
    with pytest.raises(ProtocolError, match="unknown field"):
        m.parse('{"type":"hello","version":"1","os":"x","admin":true}')
    with pytest.raises(ProtocolError):
        m.parse('{"type":"heartbeat","x":1}')


@pytest.mark.parametrize("text", [
    '{"type":"hello","version":"1"}',
    '{"type":"hello"}',
    '{"type":"channel_decision","channel":"c","reason":"r"}',
    '{"type":"code","code":"123456789"}',
    '{"type":"channel_ready","channel":"c"}',
])
def test_missing_required_field_is_refused(text: str) -> None:
    with pytest.raises(ProtocolError, match="missing field"):
        m.parse(text)


def test_missing_optional_fields_take_their_defaults() -> None:
    msg = m.parse('{"type":"channel_ready","channel":"c","secret":"s"}')
    assert msg == m.ChannelReady(channel="c", secret="s", cols=80, rows=24)
    msg = m.parse('{"type":"session_decision","allow":false,"reason":"no"}')
    assert msg == m.SessionDecision(allow=False, reason="no", machine="", user="", os="")


@pytest.mark.parametrize("text", [
    # string fields
    '{"type":"hello","version":1,"os":"x"}',
    '{"type":"hello","version":null,"os":"x"}',
    '{"type":"hello","version":["1"],"os":"x"}',
    '{"type":"hello","version":{"v":1},"os":"x"}',
    '{"type":"hello","version":true,"os":"x"}',
    # bool fields
    '{"type":"end","reason":false}',
    '{"type":"channel_decision","channel":"c","allow":1,"reason":"r"}',
    '{"type":"channel_decision","channel":"c","allow":0,"reason":"r"}',
    '{"type":"channel_decision","channel":"c","allow":"true","reason":"r"}',
    '{"type":"channel_decision","channel":"c","allow":null,"reason":"r"}',
    # int fields: a bool is not an int, nor is a float or a string
    '{"type":"channel_ready","channel":"c","secret":"s","cols":true}',
    '{"type":"channel_ready","channel":"c","secret":"s","rows":false}',
    '{"type":"channel_ready","channel":"c","secret":"s","cols":80.0}',
    '{"type":"channel_ready","channel":"c","secret":"s","cols":80.5}',
    '{"type":"channel_ready","channel":"c","secret":"s","cols":"80"}',
    '{"type":"channel_ready","channel":"c","secret":"s","cols":null}',
    # float fields
    '{"type":"code","code":"1","expires_in":true}',
    '{"type":"code","code":"1","expires_in":"600"}',
    '{"type":"code","code":"1","expires_in":null}',
    '{"type":"code","code":"1","expires_in":[600]}',
])
def test_wrong_field_types_are_refused(text: str) -> None:
    with pytest.raises(ProtocolError, match="bad field"):
        m.parse(text)


def test_an_int_is_accepted_for_a_float_field() -> None:
    msg = m.parse('{"type":"code","code":"1","expires_in":600}')
    assert isinstance(msg, m.CodeIssued)
    assert msg.expires_in == 600.0
    assert isinstance(msg.expires_in, float)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"])
def test_nan_and_infinite_floats_are_refused(number: str) -> None:
    with pytest.raises(ProtocolError):
        m.parse('{"type":"code","code":"1","expires_in":' + number + "}")


def test_an_integer_too_big_for_a_float_is_a_protocol_error() -> None:
    # float(10**400) raises OverflowError; the peer must get a ProtocolError instead
    with pytest.raises(ProtocolError):
        m.parse('{"type":"code","code":"1","expires_in":1' + "0" * 400 + "}")


def test_lone_surrogate_escapes_are_refused() -> None:
    # "\ud800" is valid JSON but not text: the value cannot be encoded as UTF-8 again,
    # so anything that stores, hashes or forwards it would fail later
    for escape in ("\\ud800", "\\udfff", "abc\\udc80def"):
        with pytest.raises(ProtocolError):
            m.parse('{"type":"end","reason":"' + escape + '"}')
    # a proper surrogate pair is a character and stays accepted
    msg = m.parse('{"type":"end","reason":"\\ud83d\\ude42"}')
    assert msg == m.EndSession(reason="🙂")


def test_string_length_limit() -> None:
    ok = m.parse(json.dumps({"type": "end", "reason": "x" * m.MAX_TEXT}))
    assert isinstance(ok, m.EndSession) and len(ok.reason) == m.MAX_TEXT
    with pytest.raises(ProtocolError, match="bad field"):
        m.parse(json.dumps({"type": "end", "reason": "x" * (m.MAX_TEXT + 1)}))
    with pytest.raises(ProtocolError, match="bad field"):
        m.parse(json.dumps({"type": "hello", "version": "1", "os": "é" * (m.MAX_TEXT + 1)},
                           ensure_ascii=False))


@pytest.mark.parametrize("text", ["[]", '["hello"]', '"hello"', "1", "1.5", "null", "true",
                                  '[{"type":"heartbeat"}]'])
def test_non_object_json_is_refused(text: str) -> None:
    with pytest.raises(ProtocolError, match="expected a JSON object"):
        m.parse(text)


@pytest.mark.parametrize("text", ["", " ", "{", "}", '{"type":"heartbeat"', "{'type':'heartbeat'}",
                                  '{"type":"heartbeat"}{}', '{"type":"heartbeat",}', "nul",
                                  b"\xff\xfe\xfd", b'{"type":"end","reason":"\xff"}'])
def test_malformed_json_is_refused(text: str | bytes) -> None:
    with pytest.raises(ProtocolError, match="malformed JSON"):
        m.parse(text)


def test_deeply_nested_json_is_a_protocol_error_not_a_recursion_error() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    # over the control-channel limit: refused before parsing
    with pytest.raises(MessageTooBig):
        m.parse(deep)
    # under a larger limit the parser itself must not crash
    with pytest.raises(ProtocolError):
        m.loads_object(deep, limit=10**6)
    with pytest.raises(ProtocolError):
        m.loads_object(deep.encode(), limit=10**6)
    # as deep as fits under the control limit, and inside a field
    fits = "[" * 30_000 + "]" * 30_000
    assert len(fits) < m.CONTROL_MAX_BYTES
    with pytest.raises(ProtocolError):
        m.parse(fits)
    nested_obj = '{"a":' * 10_000 + "1" + "}" * 10_000
    assert len(nested_obj) < m.CONTROL_MAX_BYTES
    with pytest.raises(ProtocolError):
        m.parse(nested_obj)
    in_field = '{"type":"end","reason":' + "[" * 20_000 + "]" * 20_000 + "}"
    with pytest.raises(ProtocolError):
        m.parse(in_field)


def test_oversized_messages_are_message_too_big() -> None:
    padding = "x" * m.CONTROL_MAX_BYTES
    big = json.dumps({"type": "end", "reason": padding})
    with pytest.raises(MessageTooBig) as info:
        m.parse(big)
    assert info.value.close_code == 1009
    assert info.value.http_status == 413
    with pytest.raises(MessageTooBig):
        m.parse(big.encode())
    with pytest.raises(MessageTooBig):
        m.parse(" " * (m.CONTROL_MAX_BYTES + 1))
    # exactly at the limit is parsed (and refused only for what it says)
    at_limit = '{"type":"heartbeat"}'.ljust(m.CONTROL_MAX_BYTES)
    assert m.parse(at_limit) == m.Heartbeat()


def test_loads_object_honours_its_limit() -> None:
    assert m.loads_object('{"a":1}', 7) == {"a": 1}
    with pytest.raises(MessageTooBig):
        m.loads_object('{"a":12}', 7)


# --- which side may send what -------------------------------------------------


def test_allowed_filters_by_direction() -> None:
    hello = m.Hello(version="1", os="x").to_json()
    code = m.CodeIssued(code="123456789", expires_in=1.0).to_json()
    assert m.parse(hello, m.CLIENT_MESSAGES) == m.Hello(version="1", os="x")
    with pytest.raises(UnknownMessage):
        m.parse(hello, m.BROKER_MESSAGES)
    assert isinstance(m.parse(code, m.BROKER_MESSAGES), m.CodeIssued)
    with pytest.raises(UnknownMessage):
        m.parse(code, m.CLIENT_MESSAGES)
    with pytest.raises(UnknownMessage):
        m.parse(hello, frozenset())
    for allowed in (m.CLIENT_MESSAGES, m.BROKER_MESSAGES):
        assert m.parse('{"type":"heartbeat"}', allowed) == m.Heartbeat()


@pytest.mark.parametrize("msg", EXAMPLES, ids=lambda e: type(e).__name__)
def test_each_type_is_accepted_only_from_its_side(msg: m.Message) -> None:
    for allowed in (m.CLIENT_MESSAGES, m.BROKER_MESSAGES, frozenset({type(msg)})):
        if type(msg) in allowed:
            assert m.parse(msg.to_json(), allowed) == msg
        else:
            with pytest.raises(UnknownMessage):
                m.parse(msg.to_json(), allowed)


def test_client_and_broker_sets_share_only_heartbeat() -> None:
    assert m.CLIENT_MESSAGES & m.BROKER_MESSAGES == {m.Heartbeat}


def test_messages_are_frozen() -> None:
    msg = m.Hello(version="1", os="x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.version = "2"  # type: ignore[misc]


# --- anything at all ------------------------------------------------------------


def _check_parse(data: str | bytes) -> None:
    try:
        msg = m.parse(data)
    except ProtocolError:
        return
    assert isinstance(msg, m.Message)
    assert type(msg) in ALL_TYPES


@given(st.text())
def test_parse_arbitrary_text_raises_only_protocol_errors(text: str) -> None:
    _check_parse(text)


@given(st.binary())
def test_parse_arbitrary_bytes_raises_only_protocol_errors(data: bytes) -> None:
    _check_parse(data)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
FIELD_NAMES = sorted({f.name for c in ALL_TYPES for f in dataclasses.fields(c)} | {"extra"})


@given(
    st.sampled_from(sorted(m.Message._registry)),
    st.dictionaries(st.sampled_from(FIELD_NAMES), JSON_VALUES, max_size=6),
)
def test_parse_json_objects_with_known_types_raises_only_protocol_errors(
    kind: str, fields: dict[str, Any]
) -> None:
    text = json.dumps({"type": kind, **fields})
    try:
        msg = m.parse(text)
    except ProtocolError:
        return
    assert msg.type == kind
    # whatever was accepted can be sent on again
    assert m.parse(msg.to_json().encode()) == msg
