"""Properties of signed checkpoints (protocol/checkpoint.py) not covered by test_checkpoint.

* ``seq`` is accepted exactly on 1 ≤ seq < 2**63 (the range of an SQLite integer);
* any checkpoint, with any reason and key text (lone surrogates included, which
  ``to_json`` escapes), round-trips through one line of JSON, however that line is
  re-spelt (key order, whitespace, ASCII escapes): the signature covers values, not
  formatting;
* ``problem()`` never raises on anything ``from_json`` accepts: it returns a reason, or
  None only for the real key's signature over exactly these values.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.protocol.checkpoint import Checkpoint

KEY = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
GOOD = Checkpoint.make(KEY, 7, bytes(32), 1_700_000_000_000_000, "interval")
ANY_TEXT = st.text(alphabet=st.characters(codec=None), max_size=40)
HEX = "0123456789abcdef"


@given(st.one_of(st.integers(min_value=-3, max_value=3),
                 st.integers(min_value=2**63 - 3, max_value=2**63 + 3),
                 st.integers(min_value=-(2**70), max_value=2**70)))
def test_seq_is_accepted_exactly_in_range(seq: int) -> None:
    line = json.dumps({**asdict(GOOD), "seq": seq})
    if 1 <= seq < 2**63:
        assert Checkpoint.from_json(line).seq == seq
    else:
        with pytest.raises(ValueError, match="seq"):
            Checkpoint.from_json(line)


def respelt(obj: dict[str, Any], order: list[str], indent: int | None, ascii_only: bool) -> str:
    return json.dumps({k: obj[k] for k in order}, indent=indent, ensure_ascii=ascii_only)


@settings(max_examples=150)
@given(seq=st.integers(1, 2**63 - 1), head=st.text(alphabet=HEX, min_size=64, max_size=64),
       ts_us=st.integers(-(2**63), 2**63), reason=ANY_TEXT, key=ANY_TEXT,
       sig=st.text(alphabet=HEX, min_size=128, max_size=128),
       order=st.permutations(["seq", "head", "ts_us", "reason", "key", "sig"]),
       indent=st.none() | st.integers(0, 3), ascii_only=st.booleans())
def test_any_checkpoint_round_trips_in_any_spelling(seq: int, head: str, ts_us: int, reason: str,
                                                    key: str, sig: str, order: list[str],
                                                    indent: int | None, ascii_only: bool) -> None:
    cp = Checkpoint(seq, head, ts_us, reason, key, sig)
    assert Checkpoint.from_json(cp.to_json()) == cp
    assert "\n" not in cp.to_json()
    line = respelt(asdict(cp), order, indent, ascii_only)
    try:
        line.encode()
    except UnicodeEncodeError:  # unescaped lone surrogates: not text a file can hold
        return
    assert Checkpoint.from_json(line) == cp
    assert Checkpoint.from_json(line.encode()) == cp
    # never raises, and a made-up signature never verifies
    problem = cp.problem(KEY.public_key())
    assert isinstance(problem, str) and problem


@given(reason=st.text(alphabet=st.characters(codec="utf-8"), max_size=40),  # broker-made
       field=st.sampled_from(["seq", "ts_us", "reason", "head"]),
       data=st.data())
def test_problem_is_none_only_for_the_signed_values(reason: str, field: str,
                                                    data: st.DataObject) -> None:
    cp = Checkpoint.make(KEY, 42, bytes(range(32)), 1_700_000_000_000_001, reason)
    parsed = Checkpoint.from_json(cp.to_json())
    assert parsed.problem(KEY.public_key()) is None
    changes: dict[str, Any] = {
        "seq": data.draw(st.integers(1, 2**63 - 1).filter(lambda v: v != 42)),
        "ts_us": data.draw(st.integers().filter(lambda v: v != cp.ts_us)),
        "reason": data.draw(ANY_TEXT.filter(lambda v: v != reason)),
        "head": data.draw(st.text(alphabet=HEX, min_size=64, max_size=64)
                          .filter(lambda v: v != cp.head)),
    }
    changed = Checkpoint.from_json(json.dumps({**asdict(cp), field: changes[field]}))
    assert changed.problem(KEY.public_key()) is not None
