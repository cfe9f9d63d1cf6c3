"""The terminal sub-protocol's text frames (protocol/terminal.py).

One parser for every side: a control is accepted only by the sides listed for it, with
exactly its fields and sane values; anything else is a :class:`ProtocolError` (an
over-long frame a :class:`MessageTooBig`). Sizes are clamped by one rule.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.protocol import terminal as t
from tether.protocol.errors import MessageTooBig, ProtocolError
from tether.protocol.terminal import (
    CONTROL_MAX_BYTES,
    FROM_CLIENT,
    FROM_VIEWER,
    MAX_SIZE,
    MIN_SIZE,
    TO_CLIENT,
    TO_VIEWER,
    Ack,
    Closed,
    Echo,
    Exit,
    Resize,
    clamp,
    parse,
)

CONTROLS = [Resize, Echo, Exit, Closed, Ack]
SIDES = {"to_client": TO_CLIENT, "from_client": FROM_CLIENT, "to_viewer": TO_VIEWER,
         "from_viewer": FROM_VIEWER}
EVERY = frozenset(CONTROLS)


def frame(**body: Any) -> str:
    return json.dumps(body)


def controls() -> st.SearchStrategy[t.Control]:
    """Any control a side may legitimately send."""
    return st.one_of(
        st.builds(Resize, cols=st.integers(1, 999_999), rows=st.integers(1, 999_999)),
        st.builds(Echo, on=st.booleans()),
        st.builds(Exit, code=st.integers(-(2**31), 2**31 - 1)),
        st.builds(Closed, reason=st.text(max_size=200)),
        st.builds(Ack, offset=st.integers(0, 2**63 - 1)),
    )


# --- which side receives what ---------------------------------------------------


def test_each_side_receives_the_controls_the_module_documents() -> None:
    assert TO_CLIENT == {Resize, Ack}
    assert FROM_CLIENT == {Echo, Exit}
    assert TO_VIEWER == {Echo, Exit, Closed}
    assert FROM_VIEWER == {Resize, Ack}
    # only the broker sends "closed": a client cannot forge the broker's reason
    assert Closed not in FROM_CLIENT and Closed not in TO_CLIENT


def test_the_wire_type_names() -> None:
    assert [c.type for c in CONTROLS] == ["resize", "echo", "exit", "closed", "ack"]


@pytest.mark.parametrize("control", [Resize(80, 24), Echo(False), Exit(0), Closed("idle"),
                                     Ack(4096)], ids=lambda c: c.type)
@pytest.mark.parametrize("side", sorted(SIDES))
def test_a_control_is_accepted_only_by_the_sides_allowed_to_receive_it(control: t.Control,
                                                                       side: str) -> None:
    allowed = SIDES[side]
    for data in (control.to_json(), control.to_json().encode()):
        if type(control) in allowed:
            assert parse(data, allowed) == control
        else:
            with pytest.raises(ProtocolError, match="unknown terminal control"):
                parse(data, allowed)


def test_nothing_is_accepted_with_an_empty_allowed_set() -> None:
    with pytest.raises(ProtocolError):
        parse(Resize(80, 24).to_json(), frozenset())


# --- examples -------------------------------------------------------------------


def test_resize_on_the_wire() -> None:
    assert Resize(80, 24).to_json() == '{"type":"resize","cols":80,"rows":24}'
    assert parse('{"type":"resize","cols":132,"rows":43}', FROM_VIEWER) == Resize(132, 43)
    assert parse(b'{"rows":43,"cols":132,"type":"resize"}', TO_CLIENT) == Resize(132, 43)


def test_other_controls_on_the_wire() -> None:
    assert Echo(False).to_json() == '{"type":"echo","on":false}'
    assert Exit(127).to_json() == '{"type":"exit","code":127}'
    assert Ack(10).to_json() == '{"type":"ack","offset":10}'
    assert Closed("ended by the customer").to_json() == (
        '{"type":"closed","reason":"ended by the customer"}')
    # text stays text (ensure_ascii=False): a reason in any language fits the limit
    assert Closed("beendet – Zoë 🙂").to_json() == '{"type":"closed","reason":"beendet – Zoë 🙂"}'


def test_an_exit_status_may_be_negative() -> None:
    # a shell killed by a signal reports -signal
    assert parse(frame(type="exit", code=-9), TO_VIEWER) == Exit(-9)


def test_controls_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Resize(80, 24).cols = 10  # type: ignore[misc]


@pytest.mark.parametrize("data", [
    "", "null", "[]", '"resize"', "1", "{", "{}", '{"type":null}', '{"type":1}',
    '{"type":["resize"]}', '{"type":"RESIZE","cols":80,"rows":24}',
    '{"type":"","cols":80,"rows":24}', '{"type":"message"}',
    '{"type":"resize","cols":80}',  # missing field
    '{"type":"resize","cols":80,"rows":24,"x":1}',  # extra field
    '{"type":"echo","on":1}', '{"type":"echo","on":"true"}', '{"type":"echo","on":null}',
    '{"type":"exit","code":true}', '{"type":"exit","code":0.0}', '{"type":"exit","code":"0"}',
    '{"type":"exit","code":2147483648}', '{"type":"exit","code":-2147483649}',
    '{"type":"ack","offset":-1}', '{"type":"ack","offset":9223372036854775808}',
    '{"type":"ack","offset":1.0}', '{"type":"ack","offset":false}',
    '{"type":"closed","reason":null}', '{"type":"closed","reason":["x"]}',
    '{"type":"closed","reason":1}',
    b"\xff\xfe\x00", b'{"type":"echo","on":true}\xff', "[" * 100_000,
], ids=repr)
def test_malformed_controls_are_protocol_errors(data: str | bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(data, EVERY)


def test_a_closed_reason_is_limited_to_200_characters() -> None:
    assert parse(frame(type="closed", reason="é" * 200), TO_VIEWER) == Closed("é" * 200)
    with pytest.raises(ProtocolError):
        parse(frame(type="closed", reason="x" * 201), TO_VIEWER)


def test_ack_offsets_span_0_to_2_63_minus_1() -> None:
    assert parse(frame(type="ack", offset=0), TO_CLIENT) == Ack(0)
    assert parse(frame(type="ack", offset=2**63 - 1), TO_CLIENT) == Ack(2**63 - 1)


# --- sizes: clamped, never refused (unless absurd) ------------------------------


def test_clamp_is_the_one_size_rule() -> None:
    assert (MIN_SIZE, MAX_SIZE) == (2, 1000)
    assert clamp(80) == 80
    assert clamp(MIN_SIZE) == MIN_SIZE and clamp(MAX_SIZE) == MAX_SIZE
    assert clamp(1) == clamp(0) == clamp(-5) == MIN_SIZE
    assert clamp(1001) == clamp(10**9) == MAX_SIZE


@settings(max_examples=200)
@given(st.integers())
def test_clamp_keeps_every_size_within_bounds(value: int) -> None:
    out = clamp(value)
    assert MIN_SIZE <= out <= MAX_SIZE
    assert out == value or not MIN_SIZE <= value <= MAX_SIZE
    assert clamp(out) == out


def test_a_resize_is_clamped_when_built_and_when_parsed() -> None:
    assert Resize(1, 5000) == Resize(MIN_SIZE, MAX_SIZE)
    assert parse(frame(type="resize", cols=1, rows=999_999), FROM_VIEWER) == Resize(2, 1000)
    assert Resize(5000, 1).to_json() == '{"type":"resize","cols":1000,"rows":2}'


@settings(max_examples=200)
@given(st.integers(1, 999_999), st.integers(1, 999_999))
def test_any_sane_resize_is_accepted_and_clamped(cols: int, rows: int) -> None:
    got = parse(frame(type="resize", cols=cols, rows=rows), TO_CLIENT)
    assert isinstance(got, Resize)
    assert (got.cols, got.rows) == (clamp(cols), clamp(rows))
    assert MIN_SIZE <= got.cols <= MAX_SIZE and MIN_SIZE <= got.rows <= MAX_SIZE


@pytest.mark.parametrize("bad", [1_000_000, 10**30, -1, 0, -(10**30), True, False, 80.0, 1e6,
                                 80.5, "80", None, [80], {"n": 80}], ids=repr)
@pytest.mark.parametrize("field", ["cols", "rows"])
def test_a_resize_far_out_of_range_or_not_an_integer_is_refused(bad: Any, field: str) -> None:
    body = {"type": "resize", "cols": 80, "rows": 24, field: bad}
    with pytest.raises(ProtocolError, match="bad terminal control"):
        parse(json.dumps(body), FROM_VIEWER)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_json_non_numbers_are_not_sizes(literal: str) -> None:
    with pytest.raises(ProtocolError):
        parse('{"type":"resize","cols":' + literal + ',"rows":24}', FROM_VIEWER)


# --- frame size -----------------------------------------------------------------


def padded_closed(total: int, ch: str = "x") -> str:
    """A ``closed`` frame of exactly ``total`` UTF-8 bytes (reason over-long, so invalid)."""
    head = '{"type":"closed","reason":"'
    body = total - len(head) - 2
    n = body // len(ch.encode())
    text = head + ch * n + "x" * (body - n * len(ch.encode())) + '"}'
    assert len(text.encode()) == total
    return text


@pytest.mark.parametrize("ch", ["x", "é", "日", "🙂"])
def test_the_frame_limit_is_exact_in_utf8_bytes(ch: str) -> None:
    at_limit = padded_closed(CONTROL_MAX_BYTES, ch)
    over = padded_closed(CONTROL_MAX_BYTES + 1, ch)
    for data in (at_limit, at_limit.encode()):
        # within the limit: parsed, then refused for its too-long reason
        with pytest.raises(ProtocolError) as err:
            parse(data, TO_VIEWER)
        assert not isinstance(err.value, MessageTooBig)
    for data in (over, over.encode()):
        with pytest.raises(MessageTooBig):
            parse(data, TO_VIEWER)


def test_an_over_long_frame_is_message_too_big_before_anything_else() -> None:
    huge = " " * (CONTROL_MAX_BYTES + 1) + Resize(80, 24).to_json()
    with pytest.raises(MessageTooBig):
        parse(huge, FROM_VIEWER)
    with pytest.raises(MessageTooBig):
        parse(huge.encode(), FROM_VIEWER)
    with pytest.raises(MessageTooBig):
        parse("x" * 10_000_000, FROM_VIEWER)


@settings(max_examples=100)
@given(st.integers(CONTROL_MAX_BYTES + 1, 4 * CONTROL_MAX_BYTES),
       st.sampled_from([" ", "é", "🙂"]))
def test_any_frame_over_the_limit_is_message_too_big(size: int, ch: str) -> None:
    pad = ch * (size // len(ch.encode()) + 1)
    data = '{"type":"ack","offset":1,"pad":"' + pad + '"}'
    with pytest.raises(MessageTooBig):
        parse(data, EVERY)
    with pytest.raises(MessageTooBig):
        parse(data.encode(), EVERY)


# --- properties -----------------------------------------------------------------


@settings(max_examples=200)
@given(controls())
def test_every_control_round_trips_on_every_side_that_receives_it(control: t.Control) -> None:
    for allowed in SIDES.values():
        if type(control) not in allowed:
            continue
        for data in (control.to_json(), control.to_json().encode()):
            assert parse(data, allowed) == control


@settings(max_examples=200)
@given(controls(), st.sampled_from(sorted(SIDES)))
def test_a_control_outside_the_allowed_set_is_refused(control: t.Control, side: str) -> None:
    allowed = SIDES[side]
    if type(control) in allowed:
        return
    with pytest.raises(ProtocolError, match="unknown terminal control"):
        parse(control.to_json(), allowed)


def outcome(data: str | bytes, allowed: frozenset[type[t.Control]]) -> Any:
    try:
        return parse(data, allowed)
    except ProtocolError as exc:
        return exc


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=300), st.binary(max_size=300)))
def test_arbitrary_text_or_bytes_never_raise_anything_but_protocol_error(data: str | bytes) -> None:
    for allowed in (EVERY, *SIDES.values()):
        got = outcome(data, allowed)
        assert isinstance(got, ProtocolError) or type(got) in allowed


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=8)


@settings(max_examples=200)
@given(st.sampled_from(CONTROLS), st.dictionaries(st.sampled_from(["cols", "rows", "on", "code",
                                                                    "reason", "offset", "x"]),
                                                  JSON, max_size=4))
def test_arbitrary_fields_give_a_valid_control_or_a_protocol_error(cls: type[t.Control],
                                                                   body: dict[str, Any]) -> None:
    data = json.dumps({"type": cls.type, **body})
    got = outcome(data, EVERY)
    if isinstance(got, ProtocolError):
        return
    assert type(got) is cls
    # what was accepted has exactly the class's fields, each of the right type
    assert set(body) == {f.name for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        value = getattr(got, f.name)
        want = {"cols": int, "rows": int, "code": int, "offset": int, "on": bool,
                "reason": str}[f.name]
        assert type(value) is want, (f.name, value)
    if isinstance(got, Resize):
        assert MIN_SIZE <= got.cols <= MAX_SIZE and MIN_SIZE <= got.rows <= MAX_SIZE


@settings(max_examples=200)
@given(controls())
def test_a_parsed_control_serializes_back_to_an_equal_frame(control: t.Control) -> None:
    again = parse(control.to_json(), EVERY)
    assert json.loads(again.to_json()) == json.loads(control.to_json())
    assert len(control.to_json().encode("utf-8", "surrogatepass")) <= CONTROL_MAX_BYTES


def test_hidden_input_is_counted_in_runs_ended_by_a_line_end_or_echo() -> None:
    runs = t.HiddenRuns()
    assert runs.add(b"hunt") is None and runs.add(b"er2") is None
    assert runs.add(b"\r") == 8  # one password, one run
    assert runs.end() is None  # nothing since
    assert runs.add(b"ls\nrm") == 5  # a paste: the line end ends the run
    assert runs.end() is None
    assert runs.add(b"y") is None
    assert runs.end() == 1  # echo came back
    assert runs.count == 3
    assert t.hidden_label(8) == "hidden input (8 bytes)"
