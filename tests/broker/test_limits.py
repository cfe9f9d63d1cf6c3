"""Sliding-window counters behind the code and sign-in limits (broker/limits.py)."""

from __future__ import annotations

import types

import pytest

from tether.broker import limits
from tether.broker.limits import SlidingWindow, address_key


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


def test_counts_hits_per_key(clock: Clock) -> None:
    w = SlidingWindow(limit=3, window=60)
    assert [w.hit("alice") for _ in range(4)] == [1, 2, 3, 4]
    assert w.hit("bob") == 1
    assert w.count("alice") == 4
    assert w.count("bob") == 1
    assert w.count("nobody") == 0


def test_under_the_limit_there_is_no_wait(clock: Clock) -> None:
    w = SlidingWindow(limit=3, window=60)
    assert w.retry_after("alice") == 0.0
    w.hit("alice")
    w.hit("alice")
    assert w.retry_after("alice") == 0.0


def test_at_the_limit_the_wait_is_until_the_oldest_hit_leaves(clock: Clock) -> None:
    w = SlidingWindow(limit=3, window=60)
    w.hit("alice")  # t=1000
    clock.now += 10
    w.hit("alice")  # t=1010
    clock.now += 10
    w.hit("alice")  # t=1020
    assert w.retry_after("alice") == pytest.approx(40)
    assert w.retry_after("bob") == 0.0  # other keys are not affected
    clock.now += 39.9
    assert w.retry_after("alice") == pytest.approx(0.1)
    clock.now += 0.1  # the first hit is now a full window old
    assert w.retry_after("alice") == 0.0
    assert w.count("alice") == 2


def test_hits_beyond_the_limit_extend_the_wait(clock: Clock) -> None:
    w = SlidingWindow(limit=2, window=60)
    for _ in range(5):
        w.hit("ip")
        clock.now += 1
    # hits at 1000..1004; under the limit again once only one is left in the window
    assert w.retry_after("ip") == pytest.approx(1003 + 60 - 1005)
    clock.now = 1063
    assert w.retry_after("ip") == 0.0
    assert w.count("ip") == 1


def test_old_hits_are_forgotten(clock: Clock) -> None:
    w = SlidingWindow(limit=10, window=5)
    for _ in range(10):
        w.hit("k")
    assert w.count("k") == 10
    clock.now += 5
    assert w.count("k") == 0
    assert w.hit("k") == 1


def test_clear(clock: Clock) -> None:
    w = SlidingWindow(limit=1, window=60)
    w.hit("alice")
    w.hit("bob")
    assert w.retry_after("alice") > 0
    w.clear("alice")
    assert w.retry_after("alice") == 0.0 and w.count("alice") == 0
    assert w.count("bob") == 1
    w.clear("never-seen")  # harmless


def test_idle_keys_do_not_accumulate(clock: Clock) -> None:
    w = SlidingWindow(limit=5, window=1)
    for i in range(1000):
        w.hit(("ip", i))
    clock.now += 2
    for i in range(1000):
        assert w.count(("ip", i)) == 0
        assert w.retry_after(("ip", i)) == 0.0
    assert w._events == {}


def test_with_the_real_clock() -> None:
    w = SlidingWindow(limit=2, window=3600)
    w.hit("x")
    w.hit("x")
    wait = w.retry_after("x")
    assert 3500 < wait <= 3600


def test_a_token_bucket_allows_a_burst_then_the_rate(clock: Clock) -> None:
    b = limits.TokenBucket(burst=3, rate=2.0)
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a") == pytest.approx(0.5)
    assert b.take("b") == 0.0  # per key
    clock.now += 0.5
    assert b.take("a") == 0.0
    assert b.take("a") > 0


def test_reserve_spends_tokens_still_to_come_so_waiters_queue(clock: Clock) -> None:
    b = limits.TokenBucket(burst=1, rate=1.0)
    assert b.reserve("s") == 0.0
    assert b.reserve("s") == pytest.approx(1.0)
    assert b.reserve("s") == pytest.approx(2.0)  # behind the one before it
    clock.now += 10
    assert b.reserve("s") == 0.0
    b.reserve("s")
    b.forget("s")  # a session that ended: its next resume starts with a full bucket
    assert b.reserve("s") == 0.0


def test_an_ipv6_host_counts_as_its_64() -> None:
    """One host is given a /64: per-address limits count the /64, not each address."""
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9") \
        == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"  # IPv4 on a dual-stack socket
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("?") == "?"
