"""The customer's side of each data-channel kind, run only after the customer's yes.

One module per kind in ``protocol.channels.KINDS`` (``terminal.py``); ``watch.py``
is what the customer sees of them. :data:`RUNNERS` is the client's half of the
kind table: a kind with no runner here is refused as unsupported, whatever the
broker asks. :class:`OpenChannels` runs them: each channel is a task of the
connection's :class:`~tether.client.tasks.TaskOwner`, with its own relay
WebSocket, stopped one by one or all at once.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import Awaitable, Callable, Iterable

from websockets.exceptions import WebSocketException

from ...protocol.errors import TetherError
from ...protocol.messages import ChannelReady
from ...protocol.terminal import hidden_label
from .. import tunnel
from ..journal import Journal
from ..tasks import TaskOwner
from .terminal import Spawn, TerminalChannel
from .watch import Watcher

RUNNERS = {TerminalChannel.kind: TerminalChannel}

#: called once a channel has ended, with its id, its kind and why
OnClosed = Callable[[str, str, str], Awaitable[None]]
#: awaited before a channel starts anything on this machine
BeforeStart = Callable[[], Awaitable[None]]
#: told the PIDs a channel's processes had when it stopped them
OnStopped = Callable[[Iterable[int]], None]


class OpenChannels:
    def __init__(self, base: str, ctx: ssl.SSLContext, watcher: Watcher, journal: Journal,
                 shell: str | None, spawn: Spawn, before_start: BeforeStart,
                 on_stopped: OnStopped) -> None:
        self.base, self.ctx = base, ctx
        self.watcher = watcher
        self.journal = journal
        self.shell = shell
        self.spawn = spawn
        self.before_start = before_start
        self.on_stopped = on_stopped
        self.running: dict[str, TerminalChannel] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def __contains__(self, channel: str) -> bool:
        return channel in self.tasks

    def __bool__(self) -> bool:
        return bool(self.tasks)

    def start(self, owner: TaskOwner, ready: ChannelReady, kind: str, technician: str,
              on_closed: OnClosed) -> None:
        """Run a channel the customer allowed (the caller checked) until it ends."""
        task = owner.spawn(self._run(ready, kind, technician, on_closed), name="channel")
        self.tasks[ready.channel] = task

    async def _run(self, ready: ChannelReady, kind: str, technician: str,
                   on_closed: OnClosed) -> None:
        channel = ready.channel
        reason = "closed"
        runner: TerminalChannel | None = None
        try:
            ws = await tunnel.open_relay(self.base, self.ctx, ready.secret)
            async with ws:
                runner = RUNNERS[kind](ready, functools.partial(self.watcher.output, channel),
                                       self.shell, self.spawn,
                                       functools.partial(self._hidden, channel))
                self.running[channel] = runner
                await self.before_start()
                detail = await runner.start()
                self.journal.write("channel_open", channel=channel, kind=kind, **detail)
                self.watcher.set_indicator(runner.indicator.format(who=technician))
                reason = await runner.relay(ws)
        except (OSError, WebSocketException, TetherError) as exc:
            reason = f"could not open the channel: {exc.__class__.__name__}"
        finally:
            self.running.pop(channel, None)
            self.tasks.pop(channel, None)
            if runner:
                self.on_stopped(runner.close())
            self.watcher.forget(channel)
            if not self.running:
                self.watcher.set_indicator("")
            self.journal.write("channel_closed", channel=channel, reason=reason)
            await on_closed(channel, kind, reason)

    def _hidden(self, channel: str, size: int) -> None:
        """Input the customer's terminal did not show: said in their view and their log."""
        self.journal.write("hidden_input", channel=channel, bytes=size)
        self.watcher.note(hidden_label(size))

    def stop(self, channel: str) -> None:
        """Kill the channel's processes now; its task is awaited by its owner."""
        runner = self.running.get(channel)
        if runner:
            self.on_stopped(runner.kill())
        task = self.tasks.get(channel)
        if task:
            task.cancel()

    def stop_all(self) -> None:
        for channel in list(self.tasks):
            self.stop(channel)

    def child_exited(self, pid: int, status: int) -> None:
        for runner in self.running.values():
            runner.child_exited(pid, status)
