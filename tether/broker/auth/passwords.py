"""Passwords: argon2id in a small thread pool, with a lane for known devices.

Hashing runs in a small thread pool so a burst of sign-ins cannot stall the
event loop, and an unknown user name costs the same as a known one (a dummy
hash is verified) so timing does not reveal who has an account.

A sign-in flood fills the shared queue; a browser with a valid device cookie
(:mod:`.devices`) does not wait in it: its checks take the next free worker
before any shared one, and each device may have only a few checks waiting.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter, deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from ...protocol.errors import RateLimited

T = TypeVar("T")

#: argon2id parameters (OWASP's minimum: 46 MiB, one pass, one lane). A stored
#: hash made with other parameters is upgraded at the next successful sign-in.
TIME_COST, MEMORY_KIB, PARALLELISM = 1, 46 * 1024, 1


BUSY = "the broker is busy: try again in a moment"


class Passwords:
    """argon2id in a small thread pool, with a cap on how many may wait.

    Two workers cap the memory (2 x 46 MiB) and CPU a flood of sign-ins can
    take; past ``max_waiting`` queued checks the broker answers "busy" (429)
    instead of queueing without end. The event loop never hashes.

    Jobs never queue inside the executor: a job first waits for a worker here,
    so a known device's check (``device`` given) takes the next free worker
    ahead of the shared queue. It is capped per device (``per_device`` waiting
    or running), never by the shared queue, so a flood cannot make it "busy".
    """

    def __init__(self, workers: int = 2, max_waiting: int = 64, per_device: int = 2) -> None:
        self._hasher = PasswordHasher(time_cost=TIME_COST, memory_cost=MEMORY_KIB,
                                      parallelism=PARALLELISM)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        self._idle = workers
        #: checks waiting for a worker: known devices' first, then the shared queue
        self._queues: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())
        self._waiting = 0  # shared queue: waiting or running
        self._by_device: Counter[Hashable] = Counter()
        self.max_waiting = max_waiting
        self.per_device = per_device

    def hash_sync(self, password: str) -> str:
        return self._hasher.hash(password)

    async def hash(self, password: str) -> str:
        return await self._run(None, self._hasher.hash, password)

    def _verify(self, stored: str | None, password: str) -> tuple[bool, bool]:
        try:
            ok = self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerificationError, InvalidHashError):
            return False, False
        return ok, ok and self._hasher.check_needs_rehash(stored or "")

    async def verify(self, stored: str | None, password: str,
                     device: Hashable | None = None) -> tuple[bool, bool]:
        """(right password, hash needs upgrading); an unknown user (``stored`` None)
        costs the same as a known one: a dummy hash is checked. ``device``: the
        known device this attempt comes from (its own lane), None for the shared one."""
        return await self._run(device, self._verify, stored, password)

    async def _run(self, device: Hashable | None, fn: Callable[..., T], *args: Any) -> T:
        if device is None:
            if self._waiting >= self.max_waiting:
                raise RateLimited(2.0, BUSY)
            self._waiting += 1
        else:
            if self._by_device[device] >= self.per_device:
                raise RateLimited(2.0, BUSY)
            self._by_device[device] += 1
        try:
            await self._worker(first=device is not None)
            return await asyncio.wrap_future(self._submit(fn, *args))
        finally:
            if device is None:
                self._waiting -= 1
            else:
                self._by_device[device] -= 1
                if not self._by_device[device]:
                    del self._by_device[device]

    async def _worker(self, *, first: bool) -> None:
        """Wait until a worker is ours (given by :meth:`_hand_on`)."""
        if self._idle > 0:
            self._idle -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._queues[0 if first else 1].append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():  # given a worker we will not use
                self._hand_on()
            raise

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Run on the worker we hold; it is handed on when the thread is done with
        it (not when the caller stops waiting), so jobs never queue in the pool."""
        loop = asyncio.get_running_loop()

        def done(_: Future[T]) -> None:
            try:
                loop.call_soon_threadsafe(self._hand_on)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        try:
            job = self._pool.submit(fn, *args)
        except RuntimeError:  # shut down
            self._hand_on()
            raise
        job.add_done_callback(done)
        return job

    def _hand_on(self) -> None:
        """A worker is free: to the first waiting known device, else the shared queue."""
        for queue in self._queues:
            while queue:
                turn = queue.popleft()
                if not turn.done():  # skip the ones whose caller went away
                    turn.set_result(None)
                    return
        self._idle += 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
