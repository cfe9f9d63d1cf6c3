"""An owner for background tasks: nothing the client starts is fire-and-forget.

Every task is started through a :class:`TaskOwner` (one per client run, one per
control connection); leaving its ``async with`` block cancels whatever is still
running and awaits it, so no prompt, channel or poller outlives the connection
or the session it belongs to. Unlike :class:`asyncio.TaskGroup`, a failing task
does not cancel its siblings by itself: its exception is kept, and the owner's
user (the connection loop) decides, through :meth:`TaskOwner.wait`, what it
means. Exceptions are always retrieved, so none is lost to "never retrieved".
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


class TaskOwner:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._failure: asyncio.Future[BaseException] | None = None
        self._closed = False

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a task this owner will cancel and await."""
        if self._closed:
            coro.close()
            raise RuntimeError("this task owner is closed")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _failed(self) -> asyncio.Future[BaseException]:
        if self._failure is None:
            self._failure = asyncio.get_running_loop().create_future()
        return self._failure

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so never reported as lost
        if exc is not None and not self._failed().done():
            self._failed().set_result(exc)

    async def wait(self, stop: asyncio.Event) -> BaseException | None:
        """Until a task fails (returns its exception) or ``stop`` is set (returns None)."""
        failed = self._failed()
        if failed.done():
            return failed.result()
        stopper = self.spawn(stop.wait(), name="stop")
        either: set[asyncio.Future[Any]] = {stopper, failed}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        return failed.result() if failed.done() else None

    async def aclose(self) -> None:
        """Cancel every task still running and await them all."""
        self._closed = True
        while self._tasks:
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def __aenter__(self) -> TaskOwner:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
