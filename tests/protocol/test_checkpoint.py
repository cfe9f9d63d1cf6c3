"""Signed checkpoints (protocol/checkpoint.py) and the fast canonical form (canon.row_canon)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tether.protocol.canon import canon, row_canon
from tether.protocol.checkpoint import TYPE, Checkpoint, key_fingerprint

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
HEAD = hashlib.sha256(b"head").digest()
CP = Checkpoint.make(KEY, 42, HEAD, 1_700_000_000_123_456, "session end")
FIELDS = {"seq", "head", "ts_us", "reason", "key", "sig"}


def good() -> dict[str, Any]:
    return json.loads(CP.to_json())


# --- signing --------------------------------------------------------------------------


def test_a_checkpoint_round_trips_and_verifies() -> None:
    assert CP.problem(KEY.public_key()) is None
    assert Checkpoint.from_json(CP.to_json()) == CP
    assert Checkpoint.from_json(CP.to_json().encode()) == CP
    assert (CP.seq, CP.head, CP.ts_us, CP.reason) == (42, HEAD.hex(), 1_700_000_000_123_456,
                                                     "session end")
    # one line of compact JSON with sorted keys: what goes in the file and to syslog
    assert CP.to_json() == json.dumps(asdict(CP), sort_keys=True, separators=(",", ":"))
    assert "\n" not in CP.to_json()


def test_the_key_fingerprint_is_the_sha256_of_the_raw_public_key() -> None:
    raw = KEY.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    assert key_fingerprint(KEY.public_key()) == "SHA256:" + hashlib.sha256(raw).hexdigest()
    assert CP.key == key_fingerprint(KEY.public_key())
    assert key_fingerprint(OTHER.public_key()) != CP.key


def test_the_signature_covers_every_field_and_the_type() -> None:
    body = json.loads(CP.signed_bytes())
    assert body == {"seq": 42, "head": HEAD.hex(), "ts_us": 1_700_000_000_123_456,
                    "reason": "session end", "key": CP.key, "type": TYPE}
    KEY.public_key().verify(bytes.fromhex(CP.sig), CP.signed_bytes())


@pytest.mark.parametrize("change", [
    {"seq": 43},
    {"seq": 41},
    {"head": hashlib.sha256(b"other head").hexdigest()},
    {"ts_us": 1_700_000_000_123_457},
    {"reason": "interval"},
    {"reason": ""},
])
def test_any_changed_field_breaks_the_signature(change: dict[str, Any]) -> None:
    assert replace(CP, **change).problem(KEY.public_key()) == (
        f"its signature does not verify with the audit key {CP.key}")


@pytest.mark.parametrize("sig", ["", "zz" * 64, CP.sig[:-2], CP.sig + "00",
                                 CP.sig[:-2] + ("00" if CP.sig[-2:] != "00" else "01"),
                                 CP.sig.upper().replace("A", "B")])
def test_a_changed_signature_does_not_verify(sig: str) -> None:
    assert replace(CP, sig=sig).problem(KEY.public_key()) == (
        f"its signature does not verify with the audit key {CP.key}")


def test_another_key_is_named_as_such() -> None:
    theirs = Checkpoint.make(OTHER, 42, HEAD, CP.ts_us, CP.reason)
    assert theirs.problem(OTHER.public_key()) is None
    assert theirs.problem(KEY.public_key()) == (
        f"signed by another key ({key_fingerprint(OTHER.public_key())}),"
        f" not the audit key {CP.key}")
    # another key's signature, claiming to be the audit key
    claimed = replace(theirs, key=CP.key)
    assert claimed.problem(KEY.public_key()) == (
        f"its signature does not verify with the audit key {CP.key}")


def test_a_signature_over_the_body_without_its_type_is_not_a_checkpoint() -> None:
    """A signature the audit key made over something else does not verify as one."""
    body = {k: v for k, v in asdict(CP).items() if k != "sig"}
    untyped = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    forged = replace(CP, sig=KEY.sign(untyped).hex())
    assert forged.problem(KEY.public_key()) is not None


# --- parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "", "   ", "{", "null", "[]", "42", '"checkpoint"', "{}",
    "[" * 100_000,  # nesting deep enough to exhaust the recursion limit
    b"\xff\xfe\x00\x00garbage",
    b"\x80",
])
def test_text_that_is_not_a_checkpoint_is_refused(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        Checkpoint.from_json(text)


@pytest.mark.parametrize("obj", [
    {k: v for k, v in good().items() if k != "sig"},
    {k: v for k, v in good().items() if k != "seq"},
    {**good(), "type": TYPE},
    {**good(), "extra": 1},
    {**good(), "seq": "42"},
    {**good(), "seq": 42.0},
    {**good(), "seq": True},
    {**good(), "seq": None},
    {**good(), "seq": 0},
    {**good(), "seq": -1},
    {**good(), "ts_us": "1700000000123456"},
    {**good(), "ts_us": 1.7e15},
    {**good(), "ts_us": False},
    {**good(), "head": 5},
    {**good(), "head": HEAD.hex()[:-1]},
    {**good(), "head": HEAD.hex() + "0"},
    {**good(), "head": "zz" * 32},
    {**good(), "head": "é" * 64},
    {**good(), "head": ""},
    {**good(), "head": "+" + HEAD.hex()[1:]},
    {**good(), "sig": "zz" * 64},  # not hex: not a signature at all
    {**good(), "reason": None},
    {**good(), "reason": ["events"]},
    {**good(), "key": None},
    {**good(), "sig": 0},
    {**good(), "sig": None},
    [good()],
])
def test_a_malformed_checkpoint_is_refused(obj: Any) -> None:
    with pytest.raises(ValueError):
        Checkpoint.from_json(json.dumps(obj))


@pytest.mark.parametrize("head", [
    "00" * 31 + "  ",  # whitespace: bytes.fromhex skips it, 31 bytes
    " " + "00" * 31 + " ",
    "00 " * 21 + " ",  # 21 bytes
])
def test_a_head_must_be_64_hex_digits_without_whitespace(head: str) -> None:
    assert len(head) == 64
    with pytest.raises(ValueError):
        Checkpoint.from_json(json.dumps({**good(), "head": head}))


HEX = frozenset("0123456789abcdef")


def strictly_well_formed(obj: Any) -> bool:
    """A line as the broker writes it, spelled out independently of the parser."""
    return (loosely_well_formed(obj) and obj["seq"] < 2**63
            and set(obj["head"]) <= HEX and len(obj["sig"]) == 128 and set(obj["sig"]) <= HEX)


def loosely_well_formed(obj: Any) -> bool:
    """The least a parsed checkpoint must be: the six fields with their exact types, a
    positive seq, and a head of 64 hex digits (nothing else: no whitespace, no sign)."""
    kinds = {"seq": int, "head": str, "ts_us": int, "reason": str, "key": str, "sig": str}
    return (isinstance(obj, dict) and set(obj) == set(kinds)
            and all(type(obj[k]) is kind for k, kind in kinds.items())
            and obj["seq"] >= 1 and len(obj["head"]) == 64
            and set(obj["head"].lower()) <= HEX)


def parses_as_it_should(obj: Any) -> None:
    """Every strictly well-formed line parses to itself; nothing less than loosely
    well-formed parses; anything refused is refused with ValueError."""
    try:
        cp = Checkpoint.from_json(json.dumps(obj))
    except ValueError:
        assert not strictly_well_formed(obj), obj
    else:
        assert loosely_well_formed(obj), obj
        assert asdict(cp) == obj


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


def mutations() -> st.SearchStrategy[dict[str, Any]]:
    """A good checkpoint with one field removed, added or replaced by any JSON value."""
    names = st.sampled_from(sorted(FIELDS))
    return st.one_of(
        names.map(lambda k: {n: v for n, v in good().items() if n != k}),
        st.tuples(st.text(min_size=1).filter(lambda k: k not in FIELDS), json_values).map(
            lambda kv: {**good(), kv[0]: kv[1]}),
        st.tuples(names, json_values).map(lambda kv: {**good(), kv[0]: kv[1]}),
        st.tuples(names, st.text(alphabet="0123456789abcdef \t\n")).map(
            lambda kv: {**good(), kv[0]: kv[1]}),
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_only_well_formed_checkpoints_parse(obj: dict[str, Any]) -> None:
    parses_as_it_should(obj)


@settings(max_examples=300)
@given(json_values)
def test_any_json_parses_or_raises_value_error(obj: Any) -> None:
    parses_as_it_should(obj)


@settings(max_examples=300)
@given(st.binary() | st.text())
def test_any_bytes_or_text_parse_or_raise_value_error(raw: bytes | str) -> None:
    try:
        cp = Checkpoint.from_json(raw)
    except ValueError:
        return
    assert isinstance(cp, Checkpoint)


@settings(max_examples=100)
@given(seq=st.integers(1, 2**63 - 1), head=st.binary(min_size=32, max_size=32),
       ts_us=st.integers(0, 2**62), reason=st.text())
def test_any_checkpoint_made_round_trips_and_verifies(seq: int, head: bytes, ts_us: int,
                                                      reason: str) -> None:
    cp = Checkpoint.make(KEY, seq, head, ts_us, reason)
    assert Checkpoint.from_json(cp.to_json()) == cp
    assert cp.problem(KEY.public_key()) is None
    assert cp.problem(OTHER.public_key()) is not None


# --- row_canon ----------------------------------------------------------------------------


SPECIAL = "\"\\/\x00\x01\x08\t\n\r\x1f\x7f\u2028\u2029\ufeffé€😀'<>&"
texts = st.text() | st.text(alphabet=st.sampled_from(SPECIAL)) | st.text(
    alphabet=st.characters(min_codepoint=0, max_codepoint=0x40) | st.sampled_from(SPECIAL))
details = st.dictionaries(texts, st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False) | texts,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=10), max_size=5)


@settings(max_examples=300)
@given(seq=st.integers(1, 2**62), ts_us=st.integers(0, 2**62),
       session_id=st.none() | texts, actor=texts, action=texts, ip=st.none() | texts,
       detail=details)
def test_row_canon_is_canon_of_the_event(seq: int, ts_us: int, session_id: str | None,
                                         actor: str, action: str, ip: str | None,
                                         detail: dict[str, Any]) -> None:
    """The stored ``detail`` text is what the audit log writes (canonical JSON)."""
    event = {"seq": seq, "ts_us": ts_us, "session_id": session_id, "actor": actor,
             "action": action, "ip": ip, "detail": detail}
    stored = json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert row_canon(seq, ts_us, session_id, actor, action, ip, stored) == canon(event)


def test_row_canon_of_a_non_canonical_detail_differs() -> None:
    event = {"seq": 1, "ts_us": 2, "session_id": None, "actor": "a", "action": "b",
             "ip": None, "detail": {"x": 1, "a": 2}}
    for text in ['{"x":1,"a":2}', '{"a": 2, "x": 1}', '{"a":2,"x":1.0}']:
        assert row_canon(1, 2, None, "a", "b", None, text) != canon(event)
    assert row_canon(1, 2, None, "a", "b", None, '{"a":2,"x":1}') == canon(event)
