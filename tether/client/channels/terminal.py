"""The terminal channel: a PTY running the customer's login shell, relayed as bytes.

The shell runs as the customer (the client's own user), started by the shell
launcher (:mod:`~tether.client.launcher`), whose whole environment is an
allowlist: neither the shell's environment nor its parent's holds the agent
socket, display or tokens of the customer's environment. That is not a wall:
a same-user shell can reach whatever the customer's account can (other
processes' environments, agent sockets and ``~/.Xauthority`` on disk, the
customer's tmux), as the consent question says. Output is read
greedily (until the PTY has nothing more, up to 256 KiB) and sent as one
message: one message per 4 KiB read costs ~3x the relay CPU, and a timer
would delay every echo.

Text frames are the terminal sub-protocol of :mod:`tether.protocol.terminal`:
``resize`` (and the reserved ``ack``) come in, ``echo`` and ``exit`` go out;
sizes go through its one clamp.

Input the technician types while the PTY hides it (echo off: a password
prompt, ``read -s``) never shows in the customer's view, so each run of it is
announced instead: ``hidden input (N bytes)``, split by the same rule as the
broker's recording marks it (:class:`~tether.protocol.terminal.HiddenRuns`).
"""

from __future__ import annotations

import asyncio
import errno
import os
import pwd
import signal
import termios
from collections.abc import Awaitable, Callable
from typing import ClassVar

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from ...protocol import terminal
from ...protocol.errors import ProtocolError
from ...protocol.messages import ChannelReady
from .. import procfs, reaper
from ..zygote import set_size

READ_MAX = 256 * 1024
ECHO_POLL = 0.025  # seconds between checks of the PTY's echo flag while idle
def login_shell() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
    except KeyError:
        return "/bin/sh"


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Shell:
    def __init__(self, argv: list[str], cols: int = 80, rows: int = 24) -> None:
        self.argv = argv
        self.cols, self.rows = cols, rows
        self.pid = 0
        self.fd = -1
        self.exit_status: int | None = None
        self.exited = asyncio.Event()
        self.waiter: asyncio.Future[None] | None = None

    def mark_exited(self, status: int) -> None:
        self.exit_status = status
        self.exited.set()
        if self.waiter is not None:
            _wake(self.waiter)

    def attach(self, pid: int, fd: int) -> None:
        """Take over a shell the launcher started: its PID and its PTY's master side."""
        self.pid, self.fd = pid, fd
        os.set_blocking(fd, False)

    def echo_on(self) -> bool:
        """False while a program reads a hidden line (a password prompt).

        Readline turns ECHO off at every prompt too, but it also leaves
        canonical mode; a password prompt keeps ICANON and clears ECHO.
        """
        try:
            lflag = termios.tcgetattr(self.fd)[3]
        except termios.error:
            return True
        return bool(lflag & termios.ECHO) or not (lflag & termios.ICANON)

    def resize(self, cols: int, rows: int) -> None:
        self.cols, self.rows = cols, rows
        set_size(self.fd, cols, rows)  # the kernel sends SIGWINCH to the foreground group

    def read_greedy(self) -> bytes | None:
        """Everything the PTY has now (None at EOF)."""
        chunks: list[bytes] = []
        size = 0
        while size < READ_MAX:
            try:
                chunk = os.read(self.fd, 65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave fd is closed
                    return b"".join(chunks) if chunks else None
                raise
            if not chunk:
                return b"".join(chunks) if chunks else None
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        loop = asyncio.get_running_loop()
        while view:
            try:
                n = os.write(self.fd, view)
                view = view[n:]
            except BlockingIOError:
                ready: asyncio.Future[None] = loop.create_future()
                loop.add_writer(self.fd, _wake, ready)
                try:
                    await ready
                finally:
                    loop.remove_writer(self.fd)

    def kill(self) -> list[int]:
        """Hang up and kill the shell's process group (the fd stays open); returns the
        PIDs of the shell's tree that were running (what is left of it outside the group
        is killed with the client's tree at the session's end)."""
        if not self.pid:
            return []
        tree = [p for p in (self.pid, *reaper.descendants(self.pid))
                if procfs.start_of(p) is not None]
        for sig in (signal.SIGHUP, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        return tree

    def close(self) -> list[int]:
        tree = self.kill()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        return tree


async def relay(shell: Shell, ws: ClientConnection, on_output: Callable[[bytes], None],
                on_hidden: Callable[[int], None] = lambda size: None) -> str:
    """Pump PTY ⇄ WebSocket until either side ends; returns why.

    ``on_hidden(size)``: a run of input typed while echo was off has ended."""
    loop = asyncio.get_running_loop()
    fd = shell.fd
    echo = True  # as last reported to the broker, which records input by the same flag
    hidden = terminal.HiddenRuns()

    def ran(size: int | None) -> None:
        if size is not None:
            on_hidden(size)

    async def pump_out() -> str:
        nonlocal echo
        while True:
            # One future per wait, woken by the PTY, the shell's exit or the echo poll;
            # no task per chunk (this loop sits on every keystroke's echo path).
            ready: asyncio.Future[None] = loop.create_future()
            shell.waiter = ready
            loop.add_reader(fd, _wake, ready)
            poll = loop.call_later(ECHO_POLL, _wake, ready)
            try:
                await ready
            finally:
                loop.remove_reader(fd)
                poll.cancel()
                shell.waiter = None
            # Password prompts often print nothing after turning echo off, so the
            # state is polled as well as checked after output: the broker must know
            # before the customer's password is typed, to keep it out of the recording.
            now = shell.echo_on()
            if now != echo:
                echo = now
                if echo:
                    ran(hidden.end())
                await ws.send(terminal.Echo(on=echo).to_json())
            data = shell.read_greedy()
            if data:
                await ws.send(data)
                on_output(data)
            if data is None or (shell.exited.is_set() and not data):
                try:  # the PTY's EOF usually comes before SIGCHLD is handled
                    await asyncio.wait_for(shell.exited.wait(), 1.0)
                except TimeoutError:
                    pass
                code = shell.exit_status if shell.exit_status is not None else -1
                await ws.send(terminal.Exit(code=code).to_json())
                return "the shell exited"

    async def pump_in() -> str:
        async for msg in ws:
            if isinstance(msg, bytes):
                if not echo:
                    ran(hidden.add(msg))
                await shell.write(msg)
            else:
                control = terminal.parse(msg, terminal.TO_CLIENT)
                if isinstance(control, terminal.Resize):  # clamped by the parser
                    shell.resize(control.cols, control.rows)
                # terminal.Ack: reserved for resuming a live shell; accepted, ignored for now
        return "the broker closed the channel"

    tasks = [asyncio.ensure_future(pump_out()), asyncio.ensure_future(pump_in())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            try:
                return task.result()
            except ConnectionClosed:
                return "the connection to the broker closed"
            except ProtocolError as exc:  # broker text: only our own wording goes back
                await ws.close(code=exc.close_code, reason=exc.message)
                return f"the broker sent a malformed terminal control ({exc.message})"
        return "closed"
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        ran(hidden.end())


#: starts ``argv`` in a PTY of that size: (pid, master fd); the launcher's ``spawn``
Spawn = Callable[[list[str], int, int], Awaitable[tuple[int, int]]]


class TerminalChannel:
    """The customer's side of one ``terminal`` channel (opened by the ``shell`` yes)."""

    kind: ClassVar[str] = "terminal"
    title: ClassVar[str] = "Shell"
    indicator: ClassVar[str] = "{who} has a shell on this computer — press Ctrl-C to end"

    def __init__(self, ready: ChannelReady, on_output: Callable[[bytes], None],
                 shell: str | None, spawn: Spawn,
                 on_hidden: Callable[[int], None] = lambda size: None) -> None:
        self.channel = ready.channel
        self.argv = shell.split() if shell else [login_shell()]
        # the viewer's size, so the shell starts at it
        self.shell = Shell(self.argv, terminal.clamp(ready.cols), terminal.clamp(ready.rows))
        self._on_output = on_output
        self._spawn = spawn
        self._on_hidden = on_hidden

    async def start(self) -> dict[str, object]:
        """Start the shell; returns what the customer's journal records of it."""
        self.shell.attach(*await self._spawn(self.argv, self.shell.cols, self.shell.rows))
        return {"pid": self.shell.pid, "shell": self.argv[0]}

    async def relay(self, ws: ClientConnection) -> str:
        return await relay(self.shell, ws, self._on_output, self._on_hidden)

    def child_exited(self, pid: int, status: int) -> None:
        if pid == self.shell.pid:
            self.shell.mark_exited(os.waitstatus_to_exitcode(status))

    def kill(self) -> list[int]:
        return self.shell.kill()

    def close(self) -> list[int]:
        return self.shell.close()
