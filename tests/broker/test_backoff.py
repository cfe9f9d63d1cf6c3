"""Growing sign-in delays instead of a lock-out (broker/limits.py ``Backoff``).

The first ``free`` failures in the window cost nothing; each one after that
doubles the wait before the next try (1, 2, 4 s ... up to ``cap``), counted
from the last failure. Nothing here ever refuses for good: the owner of an
account gets in once the wait is over, and old failures are forgotten.
"""

from __future__ import annotations

import types

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.broker import limits
from tether.broker.limits import Backoff


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(limits, "time", types.SimpleNamespace(monotonic=c.monotonic))
    return c


def fail(b: Backoff, key: str, times: int, clock: Clock, gap: float = 0.0) -> None:
    for _ in range(times):
        b.hit(key)
        clock.now += gap


def test_the_first_failures_are_free(clock: Clock) -> None:
    b = Backoff(free=5, window=600)
    for n in range(4):
        b.hit("bob")
        assert b.retry_after("bob") == 0.0, f"after {n + 1} failures"


def test_then_each_failure_doubles_the_wait(clock: Clock) -> None:
    b = Backoff(free=5, window=600)
    fail(b, "bob", 5, clock)
    waits = []
    for _ in range(5):
        waits.append(b.retry_after("bob"))
        clock.now += waits[-1]  # the attacker waits exactly as long as told ...
        assert b.retry_after("bob") == 0.0  # ... and may try again
        b.hit("bob")
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]


def test_the_wait_counts_from_the_last_failure(clock: Clock) -> None:
    b = Backoff(free=5, window=600)
    fail(b, "bob", 6, clock, gap=10.0)  # spread out: the 6th failure was just now - 10 s
    clock.now -= 10.0
    assert b.retry_after("bob") == pytest.approx(2.0)
    clock.now += 0.5
    assert b.retry_after("bob") == pytest.approx(1.5)
    clock.now += 1.5
    assert b.retry_after("bob") == 0.0


def test_the_wait_is_capped(clock: Clock) -> None:
    b = Backoff(free=5, window=10**6, cap=300.0)
    fail(b, "bob", 40, clock)
    assert b.retry_after("bob") == pytest.approx(300.0)


def test_a_huge_failure_count_does_not_overflow() -> None:
    """2 ** (n - free) as an int is fine; turning it into a float past 2 ** 1023 is not."""
    b = Backoff(free=5, window=600, cap=300.0)
    assert b.delay(1028) == 300.0
    assert b.delay(1029) == 300.0
    assert b.delay(10**4) == 300.0


def test_never_a_lock_out_the_owner_gets_in_after_the_wait(clock: Clock) -> None:
    b = Backoff(free=5, window=600)
    fail(b, "bob", 12, clock)  # an attacker hammered the account
    wait = b.retry_after("bob")
    assert 0 < wait <= 300
    clock.now += wait
    assert b.retry_after("bob") == 0.0


def test_old_failures_are_forgotten(clock: Clock) -> None:
    b = Backoff(free=5, window=600)
    fail(b, "bob", 7, clock)
    assert b.retry_after("bob") == 4.0
    clock.now += 600.0
    assert b.retry_after("bob") == 0.0
    b.hit("bob")  # counted afresh: free again
    assert b.retry_after("bob") == 0.0


def test_failures_leave_the_window_one_by_one(clock: Clock) -> None:
    b = Backoff(free=5, window=600)
    fail(b, "bob", 6, clock, gap=100.0)  # at t0, t0+100, ..., t0+500
    # 6 failures in the window: 2 s after the last one (t0 + 500)
    clock.now = 1000.0 + 500.0
    assert b.retry_after("bob") == pytest.approx(2.0)
    clock.now = 1000.0 + 600.0  # the first one left: 5 failures, 1 s after the last
    assert b.retry_after("bob") == 0.0


def test_keys_are_independent_and_cleared_alone(clock: Clock) -> None:
    b = Backoff(free=5, window=600)
    fail(b, "bob", 6, clock)
    fail(b, "10.0.0.9", 7, clock)
    b.hit("carol")
    assert b.retry_after("bob") == 2.0
    assert b.retry_after("10.0.0.9") == 4.0
    assert b.retry_after("carol") == 0.0
    b.clear("bob")
    assert b.retry_after("bob") == 0.0
    assert b.retry_after("10.0.0.9") == 4.0
    b.hit("bob")  # cleared means counted from zero
    assert b.retry_after("bob") == 0.0


def test_an_unknown_key_has_no_wait(clock: Clock) -> None:
    b = Backoff()
    assert b.retry_after("nobody") == 0.0
    b.clear("nobody")  # no error
    assert b.retry_after("nobody") == 0.0


@given(free=st.integers(1, 10), base=st.floats(0.1, 10), cap=st.floats(1, 1000),
       n=st.integers(0, 200))
def test_delay_grows_never_shrinks_and_stays_under_the_cap(free: int, base: float, cap: float,
                                                           n: int) -> None:
    b = Backoff(free=free, window=600, base=base, cap=cap)
    assert b.delay(n) <= b.delay(n + 1) <= cap
    if n < free:
        assert b.delay(n) == 0.0
    else:
        assert b.delay(n) == pytest.approx(min(cap, base * 2 ** (n - free)))


@given(gaps=st.lists(st.floats(0, 50), max_size=30))
def test_retry_after_is_never_negative_nor_over_the_cap(gaps: list[float]) -> None:
    c = Clock()
    saved = limits.time
    limits.time = types.SimpleNamespace(monotonic=c.monotonic)  # type: ignore[assignment]
    try:
        b = Backoff(free=3, window=600, cap=60)
        for gap in gaps:
            b.hit("k")
            c.now += gap
            assert 0.0 <= b.retry_after("k") <= 60.0
    finally:
        limits.time = saved  # type: ignore[assignment]
