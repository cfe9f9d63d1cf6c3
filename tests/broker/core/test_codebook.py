"""Live session codes kept as HMACs (broker/core/codebook.py)."""

from __future__ import annotations

import hashlib
import time
import types
from typing import Any

import pytest

from tether.broker.core import codebook
from tether.broker.core.codebook import CodeBook
from tether.protocol.codes import damm, format_code
from tether.protocol.errors import BadCode


class Owner:
    """Stands for a connected client (compared by identity, like an Agent)."""

    def __init__(self, name: str) -> None:
        self.name = name


def test_issue_gives_a_valid_code_and_redeem_gives_the_owner() -> None:
    book: CodeBook[Owner] = CodeBook(ttl=600)
    bob = Owner("bob")
    code = book.issue(bob)
    assert len(code) == 9 and code.isascii() and code.isdigit() and damm(code) == 0
    assert book.redeem(code) is bob


@pytest.mark.parametrize("spelling", [format_code, lambda c: f"{c[:3]}-{c[3:6]}-{c[6:]}",
                                      lambda c: f"  {c} "])
def test_redeem_accepts_what_people_type(spelling: Any) -> None:
    book: CodeBook[Owner] = CodeBook(ttl=600)
    bob = Owner("bob")
    code = book.issue(bob)
    assert book.redeem(spelling(code)) is bob


def test_a_code_is_single_use() -> None:
    book: CodeBook[Owner] = CodeBook(ttl=600)
    code = book.issue(Owner("bob"))
    book.redeem(code)
    with pytest.raises(BadCode):
        book.redeem(code)


def test_codes_are_distinct_and_each_maps_to_its_owner() -> None:
    book: CodeBook[Owner] = CodeBook(ttl=600)
    owners = [Owner(str(i)) for i in range(200)]
    issued = [(book.issue(o), o) for o in owners]
    assert len({c for c, _ in issued}) == 200
    for code, owner in reversed(issued):
        assert book.redeem(code) is owner


def test_an_unknown_or_mistyped_code_is_refused_without_spending_the_real_one() -> None:
    book: CodeBook[Owner] = CodeBook(ttl=600)
    bob = Owner("bob")
    code = book.issue(bob)
    typo = code[:4] + str((int(code[4]) + 1) % 10) + code[5:]
    with pytest.raises(BadCode):
        book.redeem(typo)
    body = "12345678" if code[:8] != "12345678" else "87654321"
    with pytest.raises(BadCode):
        book.redeem(body + str(damm(body)))  # well-formed, never issued
    with pytest.raises(BadCode):
        book.redeem("not a code")
    assert book.redeem(code) is bob


def test_codes_expire_with_a_tiny_ttl() -> None:
    book: CodeBook[Owner] = CodeBook(ttl=0.01)
    code = book.issue(Owner("bob"))
    time.sleep(0.05)
    with pytest.raises(BadCode):
        book.redeem(code)


def test_expiry_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(codebook, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    book: CodeBook[Owner] = CodeBook(ttl=600)
    bob = Owner("bob")
    early, late = book.issue(bob), book.issue(bob)
    now[0] = 699.9
    assert book.redeem(early) is bob
    now[0] = 700.0  # exactly ttl later: no longer valid
    with pytest.raises(BadCode):
        book.redeem(late)


def test_expired_codes_are_dropped_from_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(codebook, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    book: CodeBook[Owner] = CodeBook(ttl=10)
    for i in range(50):
        book.issue(Owner(str(i)))
    now[0] = 200.0
    fresh = book.issue(Owner("new"))
    assert len(book._codes) == 1
    assert book.redeem(fresh).name == "new"


def test_revoke_removes_every_code_of_that_owner_only() -> None:
    book: CodeBook[Owner] = CodeBook(ttl=600)
    bob, carol = Owner("bob"), Owner("carol")
    bob_codes = [book.issue(bob), book.issue(bob)]
    carol_code = book.issue(carol)
    book.revoke(bob)
    for code in bob_codes:
        with pytest.raises(BadCode):
            book.redeem(code)
    assert book.redeem(carol_code) is carol
    book.revoke(bob)  # again: harmless


def _everything_in(obj: Any, seen: set[int] | None = None) -> list[Any]:
    """Every value reachable from obj's attributes and containers."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    found = [obj]
    if isinstance(obj, dict):
        for k, v in obj.items():
            found += _everything_in(k, seen) + _everything_in(v, seen)
    elif isinstance(obj, list | tuple | set | frozenset):
        for v in obj:
            found += _everything_in(v, seen)
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        found += _everything_in(vars(obj), seen)
    return found


def test_the_book_keeps_only_hmacs_never_the_code() -> None:
    book: CodeBook[Owner] = CodeBook(ttl=600)
    codes = [book.issue(Owner(str(i))) for i in range(20)]
    values = _everything_in(book)
    scalars = [v for v in values if isinstance(v, str | bytes | int) and not isinstance(v, bool)]
    # one MAC per code is there
    assert sum(isinstance(v, bytes) and len(v) == 32 for v in scalars) > len(codes)
    for code in codes:
        for v in scalars:
            if isinstance(v, int):
                assert v != int(code)
            elif isinstance(v, str):
                assert code not in v and format_code(code) not in v
            else:
                assert code.encode() not in v
    # nor a plain hash of a code: a memory dump could try all 10^8 of those
    plain = {hashlib.sha256(c.encode()).digest() for c in codes}
    assert not plain & {v for v in scalars if isinstance(v, bytes)}


def test_a_code_that_died_is_recognised_as_stale_for_a_while() -> None:
    book: CodeBook[Owner] = CodeBook(ttl=600, remember=3600)
    bob, carol = Owner("bob"), Owner("carol")
    used, revoked = book.issue(bob), book.issue(carol)
    book.redeem(used)
    book.revoke(carol)
    assert book.was_live(used) and book.was_live(format_code(revoked))
    guess = next(c for c in (f"{n:08d}" for n in range(10**8)) if c != used[:8]
                 and c != revoked[:8])
    assert not book.was_live(guess + str(damm(guess)))
    with pytest.raises(BadCode):
        book.redeem(used)
