"""Properties of canonical JSON (protocol/canon.py) not covered by test_canon/test_checkpoint.

* canon is independent of key order at every depth, and a fixed point: parsing its
  output and canonicalising again gives the same bytes (so no whitespace, sorted keys
  everywhere, one spelling of every value);
* only the top-level ``hash``/``prev_hash`` are left out, never keys of that name inside;
* on a lone surrogate (which UTF-8 cannot carry) canon fails with ``ValueError``
  (``UnicodeEncodeError``: what the audit writer turns into AuditUnavailable) and so
  does ``row_canon`` for the same event: the writer and ``audit verify`` never disagree
  about which events can exist; on anything else they give the same bytes.
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.protocol.canon import canon, chain, event_digest, row_canon

TEXT = st.text(max_size=12) | st.text(
    alphabet=st.sampled_from(['"', "\\", "\x00", "\x1f", "\x7f", "\u2028", "é", "😀", "/"]),
    max_size=6)
SURROGATE_TEXT = st.text(alphabet=st.characters(codec=None), max_size=8) | TEXT
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
EVENTS = st.dictionaries(TEXT, VALUES, max_size=8)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another insertion order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


@settings(max_examples=50)
@given(EVENTS, st.randoms(use_true_random=False))
def test_canon_ignores_key_order_at_every_depth(event: dict[str, Any], rng: random.Random) -> None:
    assert canon(shuffled(event, rng)) == canon(event)


@settings(max_examples=50)
@given(EVENTS)
def test_canon_is_a_fixed_point(event: dict[str, Any]) -> None:
    out = canon(event)
    again = canon(json.loads(out.decode("utf-8")))
    assert again == out
    assert event_digest(json.loads(out)) == event_digest(event)


@settings(max_examples=50)
@given(EVENTS, VALUES, VALUES)
def test_only_the_top_level_hashes_are_left_out(event: dict[str, Any], a: Any, b: Any) -> None:
    nested = {**event, "detail": {"hash": a, "prev_hash": b}}
    body = json.loads(canon({**nested, "hash": "x", "prev_hash": "y"}))
    assert "hash" not in body and "prev_hash" not in body
    assert body["detail"] == json.loads(json.dumps({"hash": a, "prev_hash": b}))


def row_outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except ValueError as exc:
        return type(exc)


@settings(max_examples=200)
@given(seq=st.integers(1, 2**62), ts_us=st.integers(0, 2**62),
       session_id=st.none() | SURROGATE_TEXT, actor=SURROGATE_TEXT, action=SURROGATE_TEXT,
       ip=st.none() | SURROGATE_TEXT,
       detail=st.dictionaries(SURROGATE_TEXT, SURROGATE_TEXT | VALUES, max_size=3))
def test_canon_and_row_canon_agree_on_any_text(seq: int, ts_us: int, session_id: str | None,
                                               actor: str, action: str, ip: str | None,
                                               detail: dict[str, Any]) -> None:
    event = {"seq": seq, "ts_us": ts_us, "session_id": session_id, "actor": actor,
             "action": action, "ip": ip, "detail": detail}
    stored = json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    by_canon = row_outcome(canon, event)
    by_row = row_outcome(row_canon, seq, ts_us, session_id, actor, action, ip, stored)
    assert by_canon == by_row
    if by_canon is UnicodeEncodeError:
        assert any("\ud800" <= ch <= "\udfff" for ch in json.dumps(event, ensure_ascii=False))
    else:
        assert isinstance(by_canon, bytes)


@given(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32),
       st.binary(min_size=32, max_size=32))
def test_chain_links_are_32_bytes_and_order_matters(head: bytes, a: bytes, b: bytes) -> None:
    one, two = chain(chain(head, a), b), chain(chain(head, b), a)
    assert len(one) == 32
    if a != b:
        assert one != two
