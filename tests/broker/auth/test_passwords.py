"""Password hashing (broker/auth/passwords.py): argon2id, rehash, the bounded pool.

* Hashes are argon2id with m >= 46 MiB, t = 1, p = 1.
* ``verify`` answers (right password, hash needs upgrading); a hash made with
  other parameters verifies and asks to be rehashed.
* An unknown user (``stored`` None) costs a real argon2 verification of a dummy
  hash, so timing does not tell whether the name exists.
* Hashing runs in a small thread pool; past ``max_waiting`` queued checks the
  broker answers "busy" (RateLimited) instead of queueing without end, and the
  event loop keeps running meanwhile.
* A known device's check (``device=``) never waits behind the shared queue: it
  takes the next free worker, and only its own cap (``per_device``) refuses it.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import argon2
import pytest
from argon2 import PasswordHasher, Type

from tether.broker.auth import passwords as auth
from tether.broker.auth.passwords import Passwords
from tether.protocol.errors import RateLimited

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def pw() -> Iterator[Passwords]:
    p = Passwords()
    yield p
    p.close()


@pytest.fixture(scope="module")
def stored(pw: Passwords) -> str:
    return pw.hash_sync(PASSWORD)


class Spy:
    """Wraps the PasswordHasher to record which hashes ``verify`` was given, and where."""

    def __init__(self, inner: PasswordHasher) -> None:
        self.inner = inner
        self.verified: list[tuple[str, str]] = []

    def verify(self, hash: str, password: str) -> bool:
        self.verified.append((hash, threading.current_thread().name))
        return self.inner.verify(hash, password)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_hashes_are_argon2id_with_the_minimum_parameters(stored: str) -> None:
    params = argon2.extract_parameters(stored)
    assert stored.startswith("$argon2id$v=19$")
    assert params.type is Type.ID
    assert params.memory_cost >= 46 * 1024
    assert params.time_cost == 1 and params.parallelism == 1
    assert (auth.TIME_COST, auth.MEMORY_KIB, auth.PARALLELISM) == (1, 46 * 1024, 1)


def test_every_hash_has_its_own_salt(pw: Passwords) -> None:
    assert pw.hash_sync(PASSWORD) != pw.hash_sync(PASSWORD)


async def test_async_hash_is_the_same_kind(pw: Passwords) -> None:
    h = await pw.hash(PASSWORD)
    assert argon2.extract_parameters(h) == argon2.extract_parameters(pw.hash_sync(PASSWORD))
    assert await pw.verify(h, PASSWORD) == (True, False)


async def test_verify_right_and_wrong(pw: Passwords, stored: str) -> None:
    assert await pw.verify(stored, PASSWORD) == (True, False)
    assert await pw.verify(stored, PASSWORD + " ") == (False, False)
    assert await pw.verify(stored, "") == (False, False)


@pytest.mark.parametrize("hasher", [
    PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1),  # OWASP's other choice
    PasswordHasher(time_cost=3, memory_cost=64 * 1024, parallelism=4),  # argon2-cffi's default
    PasswordHasher(time_cost=1, memory_cost=46 * 1024, parallelism=1, type=Type.I),
    PasswordHasher(time_cost=1, memory_cost=8 * 1024, parallelism=1, salt_len=8),
], ids=["id-t2-m19M", "id-t3-m64M-p4", "argon2i", "id-m8M"])
async def test_other_parameters_verify_and_ask_for_a_rehash(pw: Passwords,
                                                            hasher: PasswordHasher) -> None:
    old = hasher.hash(PASSWORD)
    assert await pw.verify(old, PASSWORD) == (True, True)
    assert await pw.verify(old, "wrong password") == (False, False)  # no rehash on failure


async def test_a_broken_hash_is_a_failure_not_an_error(pw: Passwords) -> None:
    for bad in ("", "not a hash", "$argon2id$v=19$m=47104,t=1,p=1$", "$2b$12$abcdefghijklmnop"):
        assert await pw.verify(bad, PASSWORD) == (False, False), bad


async def test_an_unknown_user_costs_a_real_verification(monkeypatch: pytest.MonkeyPatch) -> None:
    p = Passwords()
    try:
        spy = Spy(p._hasher)
        monkeypatch.setattr(p, "_hasher", spy)
        assert await p.verify(None, PASSWORD) == (False, False)
        assert await p.verify(None, "") == (False, False)
        # argon2 really ran, on an argon2id hash with the same parameters, off the event loop
        assert len(spy.verified) == 2
        for h, thread in spy.verified:
            assert argon2.extract_parameters(h) == argon2.extract_parameters(
                p.hash_sync("x" * 16))
            assert thread.startswith("argon2"), thread
    finally:
        p.close()


async def test_unknown_and_known_users_take_about_as_long(pw: Passwords, stored: str) -> None:
    """Printed, not asserted tightly: a loaded machine makes single timings noisy."""
    known, unknown = [], []
    for _ in range(7):
        t = time.perf_counter()
        await pw.verify(stored, "wrong password")
        known.append(time.perf_counter() - t)
        t = time.perf_counter()
        await pw.verify(None, "wrong password")
        unknown.append(time.perf_counter() - t)
    k, u = statistics.median(known), statistics.median(unknown)
    print(f"argon2 verify, median of 7: known user {k * 1000:.1f} ms,"
          f" unknown user {u * 1000:.1f} ms")
    assert u > k / 3  # the dummy hash really costs a verification, not nothing


async def test_the_pool_cap_answers_busy_instead_of_queueing() -> None:
    p = Passwords(workers=1, max_waiting=3)
    try:
        stored = p.hash_sync(PASSWORD)
        running = [asyncio.ensure_future(p.verify(stored, PASSWORD)) for _ in range(3)]
        await asyncio.sleep(0)  # they are all waiting on the pool now
        with pytest.raises(RateLimited) as exc:
            await p.verify(stored, PASSWORD)
        assert exc.value.http_status == 429 and exc.value.retry_after >= 1
        assert "busy" in exc.value.message
        with pytest.raises(RateLimited):
            await p.verify(None, PASSWORD)  # unknown users are no way around the cap
        with pytest.raises(RateLimited):
            await p.hash(PASSWORD)
        assert await asyncio.gather(*running) == [(True, False)] * 3
        # once the queue drained, checks are taken again
        assert await p.verify(stored, PASSWORD) == (True, False)
        assert p._waiting == 0
    finally:
        p.close()


async def test_the_cap_counts_failures_too() -> None:
    """A check that raised inside the pool must give its place back."""
    p = Passwords(workers=1, max_waiting=1)
    try:
        for _ in range(3):
            assert await p.verify("garbage", PASSWORD) == (False, False)
        assert p._waiting == 0
        assert await p.verify(p.hash_sync(PASSWORD), PASSWORD) == (True, False)
    finally:
        p.close()


async def test_the_event_loop_keeps_running_while_hashing() -> None:
    p = Passwords(workers=2, max_waiting=64)
    try:
        stored = p.hash_sync(PASSWORD)
        ticks: list[float] = []

        async def ticker() -> None:
            while True:
                ticks.append(time.perf_counter())
                await asyncio.sleep(0.005)

        task = asyncio.ensure_future(ticker())
        await asyncio.sleep(0.02)
        start = time.perf_counter()
        await asyncio.gather(*(p.verify(stored, "wrong password") for _ in range(20)))
        elapsed = time.perf_counter() - start
        task.cancel()
        gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False) if b > start]
        print(f"20 verifications in {elapsed * 1000:.0f} ms; longest event-loop gap"
              f" {max(gaps) * 1000:.1f} ms")
        assert max(gaps) < 0.25  # one verification is ~50 ms: the loop never waited for them
    finally:
        p.close()


async def test_a_known_device_takes_the_next_worker_ahead_of_the_shared_queue() -> None:
    p = Passwords(workers=1, max_waiting=4, per_device=2)
    try:
        stored = p.hash_sync(PASSWORD)
        order: list[str] = []

        async def check(who: str, device: str | None) -> None:
            await p.verify(stored, "wrong password", device)
            order.append(who)

        shared = [asyncio.ensure_future(check(f"shared-{i}", None)) for i in range(4)]
        await asyncio.sleep(0)  # one runs, three wait
        with pytest.raises(RateLimited) as exc:
            await p.verify(stored, PASSWORD)  # the shared queue is full: busy
        assert "busy" in exc.value.message
        known = asyncio.ensure_future(check("known", "device-1"))
        await asyncio.gather(*shared, known)
        # the shared check already running finishes first; the device goes next
        assert order[:2] == ["shared-0", "known"], order
        assert p._waiting == 0 and not p._by_device and p._idle == 1
    finally:
        p.close()


async def test_a_known_devices_own_cap_refuses_only_that_device() -> None:
    p = Passwords(workers=1, max_waiting=2, per_device=2)
    try:
        stored = p.hash_sync(PASSWORD)
        mine = [asyncio.ensure_future(p.verify(stored, PASSWORD, "mine")) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(RateLimited):
            await p.verify(stored, PASSWORD, "mine")
        # another device and the shared queue are not refused meanwhile
        others = [asyncio.ensure_future(p.verify(stored, PASSWORD, "yours")),
                  asyncio.ensure_future(p.verify(stored, PASSWORD))]
        assert await asyncio.gather(*mine, *others) == [(True, False)] * 4
    finally:
        p.close()


async def test_a_caller_that_goes_away_gives_its_worker_back() -> None:
    p = Passwords(workers=1, max_waiting=8)
    try:
        stored = p.hash_sync(PASSWORD)
        running = asyncio.ensure_future(p.verify(stored, PASSWORD))
        waiting = [asyncio.ensure_future(p.verify(stored, PASSWORD)) for _ in range(3)]
        await asyncio.sleep(0)
        for task in (running, *waiting[:2]):
            task.cancel()
        assert await waiting[2] == (True, False)
        await asyncio.sleep(0.2)  # the cancelled check still ran to its end in its thread
        assert await p.verify(stored, PASSWORD) == (True, False)
        assert p._idle == 1 and p._waiting == 0
    finally:
        p.close()
