"""The capability and channel-kind tables (protocol/channels.py).

What a peer can name is what the tables name: a kind or capability outside them (or a
kind only declared) is a :class:`ProtocolError`, never a crash and never a row.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.protocol import channels
from tether.protocol.channels import (
    CAPABILITIES,
    KINDS,
    MAX_FRAME,
    SCREEN_MAX_BYTES,
    TERMINAL_MAX_BYTES,
    capability,
    kind,
)
from tether.protocol.consent import WORDING
from tether.protocol.errors import ProtocolError

AVAILABLE = sorted(k.name for k in KINDS.values() if k.available)
DECLARED_ONLY = sorted(k.name for k in KINDS.values() if not k.available)
#: names a peer might send that are not a row (or not a string at all)
NOT_NAMES: list[Any] = ["", "Terminal", "TERMINAL", " terminal", "terminal ", "terminal\x00",
                        "shell", "ssh", "__class__", "get", None, 0, 1, True, 1.5, [],
                        ["terminal"], {"terminal": 1}, b"terminal"]


# --- the tables -----------------------------------------------------------------


def test_each_row_is_filed_under_its_own_name() -> None:
    assert all(name == row.name for name, row in KINDS.items())
    assert all(name == row.name for name, row in CAPABILITIES.items())


def test_the_terminal_is_opened_by_a_yes_to_shell_and_recorded_as_a_cast() -> None:
    row = kind("terminal")
    assert row.opens == "shell"
    assert row.adds == ()
    assert row.max_frame == TERMINAL_MAX_BYTES == 1024 * 1024
    assert row.recorder == "cast"


def test_every_kind_names_capabilities_that_exist() -> None:
    for row in KINDS.values():
        assert row.opens in CAPABILITIES, row.name
        for added in row.adds:
            assert added in CAPABILITIES, (row.name, added)
        # a capability is either the channel's opening yes or a later one, never both
        assert row.opens not in row.adds, row.name
        assert len(set(row.adds)) == len(row.adds), row.name


def test_the_yes_that_opens_a_channel_cannot_be_withdrawn_while_it_stays_open() -> None:
    # taking back the opening yes means closing the channel; withdrawing is for later ones
    for row in KINDS.values():
        assert not CAPABILITIES[row.opens].withdrawable, row.name


def test_every_available_kind_has_a_console_button_to_open_it() -> None:
    for name in AVAILABLE:
        assert CAPABILITIES[kind(name).opens].label, name


def test_every_capability_is_worded_by_the_clients_own_table() -> None:
    for cap in CAPABILITIES.values():
        assert cap.wording in WORDING, cap.name
        assert "{who}" in WORDING[cap.wording], cap.name


def test_frame_limits_are_positive_and_max_frame_admits_every_available_kind() -> None:
    for row in KINDS.values():
        assert row.max_frame > 0, row.name
    # before pairing the relay does not know the kind yet: no valid frame may be refused
    assert all(MAX_FRAME >= kind(name).max_frame for name in AVAILABLE)
    # and no more: an unavailable kind's larger limit does not open the relay to it
    assert MAX_FRAME == max(kind(name).max_frame for name in AVAILABLE)
    assert channels.CONTROL_MAX_BYTES == 64 * 1024
    assert SCREEN_MAX_BYTES == 16 * 1024 * 1024


def test_rows_are_frozen() -> None:
    with pytest.raises(AttributeError):
        kind("terminal").max_frame = 10**12  # type: ignore[misc]
    with pytest.raises(AttributeError):
        capability("shell").withdrawable = True  # type: ignore[misc]


# --- kind() and capability(): what a peer may name ------------------------------


@pytest.mark.parametrize("name", AVAILABLE)
def test_kind_returns_the_row_of_an_available_kind(name: str) -> None:
    assert kind(name) is KINDS[name]


@pytest.mark.parametrize("name", DECLARED_ONLY)
def test_a_kind_only_declared_is_refused_exactly_like_an_unknown_one(name: str) -> None:
    # the screen kind has a row but no codec: asking for it must not start anything,
    # and the refusal must not tell the peer the row exists
    with pytest.raises(ProtocolError) as declared:
        kind(name)
    with pytest.raises(ProtocolError) as unknown:
        kind("no-such-kind")
    assert declared.value.message == unknown.value.message == "unknown channel kind"


def test_the_screen_kind_is_declared_but_not_available_yet() -> None:
    assert "screen" in DECLARED_ONLY
    assert KINDS["screen"].opens == "screen.view"
    assert set(KINDS["screen"].adds) == {"screen.control", "clipboard"}


@pytest.mark.parametrize("name", NOT_NAMES, ids=repr)
def test_kind_refuses_anything_else_with_a_protocol_error(name: Any) -> None:
    with pytest.raises(ProtocolError):
        kind(name)


@pytest.mark.parametrize("name", sorted(CAPABILITIES))
def test_capability_returns_its_row(name: str) -> None:
    assert capability(name) is CAPABILITIES[name]


@pytest.mark.parametrize("name", [n for n in NOT_NAMES if n != "shell"]
                         + ["screen", "terminal", "screen.", "Screen.view", "screen.control "],
                         ids=repr)
def test_capability_refuses_anything_else_with_a_protocol_error(name: Any) -> None:
    with pytest.raises(ProtocolError) as err:
        capability(name)
    assert err.value.message == "unknown capability"


@settings(max_examples=200)
@given(st.one_of(st.text(max_size=20), st.sampled_from(sorted(KINDS) + sorted(CAPABILITIES))))
def test_lookups_give_the_named_row_or_a_protocol_error(name: str) -> None:
    try:
        row = kind(name)
    except ProtocolError:
        assert name not in AVAILABLE
    else:
        assert row.name == name and row.available
    try:
        cap = capability(name)
    except ProtocolError:
        assert name not in CAPABILITIES
    else:
        assert cap.name == name


@settings(max_examples=100)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                    max_leaves=5))
def test_any_json_value_is_looked_up_without_crashing(value: Any) -> None:
    # a peer's "kind" field can hold any JSON value: unhashable ones included
    for lookup in (kind, capability):
        try:
            lookup(value)
        except ProtocolError:
            pass


def test_every_capability_can_be_named_to_the_customer() -> None:
    for cap in CAPABILITIES.values():
        assert cap.noun and cap.noun == cap.noun.strip() and cap.noun[0].islower(), cap.name
