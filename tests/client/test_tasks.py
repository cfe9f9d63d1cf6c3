"""Every background task has an owner that cancels and awaits it (client/tasks.py)."""

from __future__ import annotations

import asyncio

import pytest

from tests.helpers import T
from tether.client.tasks import TaskOwner


async def test_leaving_the_block_cancels_and_awaits_every_task() -> None:
    cleaned: list[str] = []

    async def forever(name: str) -> None:
        try:
            await asyncio.sleep(1000)
        finally:
            await asyncio.sleep(0.01)  # cleanup that itself awaits is waited for
            cleaned.append(name)

    async with TaskOwner() as owner:
        tasks = [owner.spawn(forever("a")), owner.spawn(forever("b"))]
        await asyncio.sleep(0)
        assert len(owner) == 2
    assert all(t.cancelled() for t in tasks)
    assert sorted(cleaned) == ["a", "b"]
    assert len(owner) == 0


async def test_the_owner_is_closed_even_when_the_block_raises() -> None:
    with pytest.raises(ValueError):
        async with TaskOwner() as owner:
            task = owner.spawn(asyncio.sleep(1000))
            raise ValueError("boom")
    assert task.cancelled()


async def test_wait_returns_the_first_failure() -> None:
    async def fail() -> None:
        await asyncio.sleep(0.01)
        raise ConnectionError("lost")

    async with TaskOwner() as owner:
        owner.spawn(asyncio.sleep(1000))
        owner.spawn(fail())
        failure = await asyncio.wait_for(owner.wait(asyncio.Event()), T)
    assert isinstance(failure, ConnectionError)


async def test_wait_returns_none_when_told_to_stop() -> None:
    stop = asyncio.Event()
    async with TaskOwner() as owner:
        owner.spawn(asyncio.sleep(1000))
        asyncio.get_running_loop().call_later(0.01, stop.set)
        assert await asyncio.wait_for(owner.wait(stop), T) is None
        assert len(owner) == 1  # only its own stop waiter is gone


async def test_a_finished_or_cancelled_task_is_not_a_failure() -> None:
    async with TaskOwner() as owner:
        done = owner.spawn(asyncio.sleep(0))
        cancelled = owner.spawn(asyncio.sleep(1000))
        await done
        cancelled.cancel()
        stop = asyncio.Event()
        asyncio.get_running_loop().call_later(0.05, stop.set)
        assert await owner.wait(stop) is None


async def test_nothing_can_be_started_after_closing() -> None:
    owner = TaskOwner()
    await owner.aclose()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError):
        owner.spawn(coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning
