"""Background tasks of the hub: fire-and-forget work and timers owned by something.

Every timer belongs to an owner (a session or a client connection) and is
cancelled when its owner ends, so an ended session leaves no task sleeping
for hours. Failures are logged: a TetherError as its message, anything
else with its traceback.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ...protocol.errors import TetherError

log = logging.getLogger("tether.hub")


class Tasks:
    def __init__(self) -> None:
        self._tasks: set[asyncio.Future[Any]] = set()
        self._owned: dict[object, set[asyncio.Future[Any]]] = {}

    def spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        if isinstance(task, asyncio.Task):
            task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        name = task.get_name() if isinstance(task, asyncio.Task) else "task"
        if isinstance(exc, TetherError):
            log.warning("%s: %s", name, exc.message)
        else:
            log.error("%s failed", name, exc_info=exc)

    def later(self, owner: object, delay: float, coro_fn: Callable[[], Awaitable[Any]],
              name: str) -> None:
        """Run ``coro_fn`` after ``delay`` unless ``owner``'s timers are cancelled first."""
        async def run() -> None:
            await asyncio.sleep(delay)
            await coro_fn()

        task = self.spawn(run(), name)
        owned = self._owned.setdefault(owner, set())
        owned.add(task)
        task.add_done_callback(owned.discard)

    def cancel(self, owner: object) -> None:
        for task in self._owned.pop(owner, ()):
            if task is not asyncio.current_task():
                task.cancel()

    def cancel_all(self) -> None:
        for task in list(self._tasks):
            task.cancel()
