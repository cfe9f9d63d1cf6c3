"""Background tasks of the core: every one has an owner that cancels it.

A timer or a spawned task belongs to an owner (a session or a client
connection) and is cancelled when its owner ends, so an ended session leaves
no task sleeping for hours; :meth:`Tasks.close` cancels and awaits the rest
at shutdown. Failures are logged: a TetherError as its message, anything
else with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ...protocol.errors import TetherError

log = logging.getLogger("tether.core")


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self._owned: dict[object, set[asyncio.Task[Any]]] = {}

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str,
              owner: object = None) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        if owner is not None:
            owned = self._owned.setdefault(owner, set())
            owned.add(task)
            task.add_done_callback(owned.discard)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, TetherError):
            log.warning("%s: %s", task.get_name(), exc.message)
        else:
            log.error("%s failed", task.get_name(), exc_info=exc)

    def later(self, owner: object, delay: float, coro_fn: Callable[[], Awaitable[Any]],
              name: str) -> None:
        """Run ``coro_fn`` after ``delay`` unless ``owner``'s tasks are cancelled first."""
        async def run() -> None:
            await asyncio.sleep(delay)
            await coro_fn()

        self.spawn(run(), name, owner)

    def cancel(self, owner: object) -> None:
        for task in self._owned.pop(owner, ()):
            if task is not asyncio.current_task():
                task.cancel()

    async def close(self) -> None:
        """Cancel every task and wait for them to finish (at shutdown)."""
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
