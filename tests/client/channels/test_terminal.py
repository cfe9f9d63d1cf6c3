"""The terminal channel's relay speaks protocol/terminal.py (client/channels/terminal.py).

A real shell in a real PTY; the relay WebSocket is a queue.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest

from tests.helpers import T
from tether.client import zygote
from tether.client.channels.terminal import Shell, TerminalChannel, relay
from tether.protocol import messages as m
from tether.protocol import terminal
from tether.protocol.errors import Close


class Relay:
    """The client's end of a relay: frames from the viewer in, frames sent out."""

    def __init__(self, *frames: str | bytes) -> None:
        self.queue: asyncio.Queue[str | bytes | None] = asyncio.Queue()
        for frame in frames:
            self.queue.put_nowait(frame)
        self.sent: list[str | bytes] = []
        self.closed: tuple[int, str] | None = None

    def end(self) -> None:
        self.queue.put_nowait(None)

    def __aiter__(self) -> Relay:
        return self

    async def __anext__(self) -> str | bytes:
        frame = await self.queue.get()
        if frame is None:
            raise StopAsyncIteration
        return frame

    async def send(self, data: str | bytes) -> None:
        self.sent.append(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = (code, reason)
        self.end()

    def controls(self) -> list[terminal.Control]:
        return [terminal.parse(f, terminal.FROM_CLIENT) for f in self.sent if isinstance(f, str)]


def started(argv: list[str]) -> Shell:
    """A shell forked by this process the way the launcher forks one (zygote.spawn)."""
    sh = Shell(argv, 80, 24)
    sh.attach(*zygote.spawn(argv, 80, 24))
    return sh


@pytest.fixture
def shell() -> Iterator[Shell]:
    sh = started(["/bin/sh", "-c", "exec cat"])
    yield sh
    sh.close()
    try:
        os.waitpid(sh.pid, 0)
    except ChildProcessError:
        pass


async def test_resize_is_parsed_and_clamped(shell: Shell) -> None:
    ws = Relay('{"type":"resize","cols":100,"rows":30}',
               '{"type":"resize","cols":5000,"rows":1}')
    ws.end()
    reason = await asyncio.wait_for(relay(shell, ws, lambda d: None), T)  # type: ignore[arg-type]
    assert reason == "the broker closed the channel"
    assert (shell.cols, shell.rows) == (terminal.MAX_SIZE, terminal.MIN_SIZE)


async def test_ack_is_accepted_and_ignored(shell: Shell) -> None:
    ws = Relay('{"type":"ack","offset":42}', b"input\n")
    ws.end()
    reason = await asyncio.wait_for(relay(shell, ws, lambda d: None), T)  # type: ignore[arg-type]
    assert reason == "the broker closed the channel" and ws.closed is None


@pytest.mark.parametrize("frame", [
    '{"type":"exit","code":0}',  # the client's own message, never one it receives
    '{"type":"resize","cols":"80","rows":24}',
    '{"type":"resize","cols":80}',
    '{"type":"bogus"}',
    "not json",
])
async def test_anything_else_closes_the_channel_with_a_policy_close(
        shell: Shell, frame: str) -> None:
    ws = Relay(frame)
    reason = await asyncio.wait_for(relay(shell, ws, lambda d: None), T)  # type: ignore[arg-type]
    assert reason.startswith("the broker sent a malformed terminal control")
    assert ws.closed is not None and ws.closed[0] == Close.POLICY


async def test_output_then_the_exit_status_as_protocol_messages() -> None:
    sh = started(["/bin/sh", "-c", "echo out-$((6*7)); exit 3"])

    async def reap() -> None:
        while True:
            pid, status = os.waitpid(sh.pid, os.WNOHANG)
            if pid:
                sh.mark_exited(os.waitstatus_to_exitcode(status))
                return
            await asyncio.sleep(0.01)

    reaping = asyncio.create_task(reap())
    ws = Relay()
    seen: list[bytes] = []
    try:
        reason = await asyncio.wait_for(relay(sh, ws, seen.append), T)  # type: ignore[arg-type]
    finally:
        sh.close()
        await asyncio.wait_for(reaping, T)
    assert reason == "the shell exited"
    assert b"out-42" in b"".join(f for f in ws.sent if isinstance(f, bytes))
    assert b"out-42" in b"".join(seen)  # what the customer watches
    assert ws.controls()[-1] == terminal.Exit(code=3)
    assert all(isinstance(c, terminal.Echo | terminal.Exit) for c in ws.controls())


async def test_the_channel_asks_the_launcher_for_the_viewers_clamped_size() -> None:
    asked: list[tuple[list[str], int, int]] = []

    async def spawn(argv: list[str], cols: int, rows: int) -> tuple[int, int]:
        asked.append((argv, cols, rows))
        read_end, write_end = os.pipe()  # stands in for the PTY's master side
        os.close(write_end)
        return 4242, read_end

    ready = m.ChannelReady(channel="c1", secret="s", cols=4000, rows=0)
    ch = TerminalChannel(ready, lambda d: None, "/bin/sh", spawn)
    assert await ch.start() == {"pid": 4242, "shell": "/bin/sh"}
    assert asked == [(["/bin/sh"], terminal.MAX_SIZE, terminal.MIN_SIZE)]
    assert ch.argv == ["/bin/sh"] and ch.kind == "terminal"
    ch.shell.pid = 0  # not a real process: nothing to kill
    ch.close()
