"""Canonical JSON and the audit hash chain (protocol/canon.py)."""

from __future__ import annotations

import hashlib
import json

from hypothesis import given
from hypothesis import strategies as st

from tether.protocol.canon import GENESIS, canon, chain, event_digest

EVENT = {
    "seq": 7,
    "ts_us": 1_700_000_000_123_456,
    "session_id": "s_abc",
    "actor": "alice",
    "action": "session.claimed",
    "ip": "127.0.0.1",
    "detail": {"z": 1, "a": "Zoë", "m": [3, 2, 1]},
    "prev_hash": b"\x01" * 32,
    "hash": b"\x02" * 32,
}


def test_canon_sorts_keys_without_whitespace_and_without_the_hashes() -> None:
    assert canon(EVENT) == (
        '{"action":"session.claimed","actor":"alice",'
        '"detail":{"a":"Zoë","m":[3,2,1],"z":1},'
        '"ip":"127.0.0.1","seq":7,"session_id":"s_abc","ts_us":1700000000123456}'
    ).encode()


def test_canon_is_utf8_not_ascii_escapes() -> None:
    out = canon({"actor": "Zoë 🙂"})
    assert out == '{"actor":"Zoë 🙂"}'.encode()
    assert b"\\u" not in out


def test_canon_ignores_key_order_and_the_hash_fields() -> None:
    shuffled = dict(reversed(list(EVENT.items())))
    assert canon(shuffled) == canon(EVENT)
    without = {k: v for k, v in EVENT.items() if k not in ("hash", "prev_hash")}
    assert canon(without) == canon(EVENT)
    other_hashes = {**EVENT, "hash": b"x", "prev_hash": b"y"}
    assert canon(other_hashes) == canon(EVENT)


def test_canon_changes_with_any_field() -> None:
    base = canon(EVENT)
    for key, value in [("seq", 8), ("ts_us", 1), ("session_id", None), ("actor", "bob"),
                       ("action", "x"), ("ip", "10.0.0.1"), ("detail", {"z": 2})]:
        assert canon({**EVENT, key: value}) != base, key


def test_chain_matches_the_formula_computed_by_hand() -> None:
    body = {k: v for k, v in EVENT.items() if k not in ("hash", "prev_hash")}
    by_hand = json.dumps(body, sort_keys=True, separators=(",", ":"),
                         ensure_ascii=False).encode()
    digest = hashlib.sha256(by_hand).digest()
    assert event_digest(EVENT) == digest
    prev = hashlib.sha256(b"previous").digest()
    assert chain(prev, digest) == hashlib.sha256(prev + digest).digest()


def test_first_link_uses_32_zero_bytes() -> None:
    assert GENESIS == b"\x00" * 32
    digest = event_digest(EVENT)
    assert chain(GENESIS, digest) == hashlib.sha256(b"\x00" * 32 + digest).digest()


def test_a_chain_of_events_computed_by_hand() -> None:
    events = [{**EVENT, "seq": i, "action": f"a{i}"} for i in range(1, 6)]
    head = GENESIS
    for e in events:
        c = json.dumps({k: v for k, v in e.items() if k not in ("hash", "prev_hash")},
                       sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        expected = hashlib.sha256(head + hashlib.sha256(c).digest()).digest()
        assert chain(head, event_digest(e)) == expected
        head = expected
    # reordering two events gives another head
    swapped = [events[1], events[0], *events[2:]]
    other = GENESIS
    for e in swapped:
        other = chain(other, event_digest(e))
    assert other != head


@given(st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10), max_size=8))
def test_canon_is_parseable_sorted_json(event: dict[str, object]) -> None:
    out = canon(event)
    parsed = json.loads(out.decode("utf-8"))
    assert parsed == {k: v for k, v in event.items() if k not in ("hash", "prev_hash")}
    assert list(parsed) == sorted(parsed)
