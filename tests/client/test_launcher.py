"""Shells start from a launcher whose whole environment is clean (client/launcher.py,
client/zygote.py): a real launcher process, real PTYs."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import T
from tether.client import launcher as la
from tether.client import reaper

SECRETS = {"SSH_AUTH_SOCK": "/tmp/agent.sock", "DISPLAY": ":9", "XAUTHORITY": "/tmp/xa",
           "DBUS_SESSION_BUS_ADDRESS": "unix:path=/tmp/bus", "TMUX": "/tmp/tmux-0/default,1,0",
           "GITHUB_TOKEN": "ghp_secret", "PYTHONPATH": "/tmp/evil"}


class Exits:
    def __init__(self) -> None:
        self.seen: dict[int, int] = {}
        self.changed = asyncio.Event()

    def __call__(self, pid: int, status: int) -> None:
        self.seen[pid] = status
        self.changed.set()

    async def of(self, pid: int) -> int:
        async with asyncio.timeout(3 * T):
            while pid not in self.seen:
                self.changed.clear()
                await self.changed.wait()
        return os.waitstatus_to_exitcode(self.seen[pid])


@pytest.fixture
async def launcher(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[la.Launcher, Exits]]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    exits = Exits()
    lau = la.Launcher(on_exit=exits)
    lau.start()
    yield lau, exits
    lau.close()


def environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes()
    return dict(x.split("=", 1) for x in raw.decode().split("\0") if "=" in x)


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


async def read_until(fd: int, marker: bytes) -> None:
    os.set_blocking(fd, False)
    out = b""
    async with asyncio.timeout(3 * T):
        while marker not in out:
            try:
                out += os.read(fd, 65536)
            except BlockingIOError:
                await asyncio.sleep(0.01)


async def read_all(fd: int) -> bytes:
    """Everything the PTY prints until its shell has exited (EIO)."""
    out = bytearray()
    deadline = time.monotonic() + 3 * T
    os.set_blocking(fd, False)
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            await asyncio.sleep(0.01)
            continue
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(fd)
    return bytes(out)


def test_the_kept_environment_is_an_allowlist() -> None:
    env = la.clean_env({"HOME": "/h", "PATH": "/bin", "LC_ALL": "C", "LANG": "C.UTF-8",
                        **SECRETS, "AWS_SECRET_ACCESS_KEY": "x", "LD_PRELOAD": "/x.so"})
    assert env == {"HOME": "/h", "PATH": "/bin", "LC_ALL": "C", "LANG": "C.UTF-8"}


async def test_the_shells_parent_and_the_shell_hold_no_secret(
        launcher: tuple[la.Launcher, Exits]) -> None:
    lau, exits = launcher
    pid, fd = await lau.spawn(["/bin/sh", "-c", "echo ready; exec sleep 1000"], 80, 24)
    try:
        await read_until(fd, b"ready")  # the shell has been exec'd
        assert ppid(pid) == lau.pid  # the launcher is the parent, not this process
        parent = environ(lau.pid)
        assert not set(SECRETS) & set(parent), sorted(parent)
        assert set(parent) <= set(la.KEPT_ENV) | {k for k in parent if k.startswith("LC_")}
        assert parent["HOME"] == os.environ["HOME"]
        shell = environ(pid)
        assert not set(SECRETS) & set(shell)
        assert shell["TERM"] == "xterm-256color" and shell["TETHER_SESSION"] == "1"
        # the PTY and nothing else: not the launcher's socket to the client
        assert sorted(os.listdir(f"/proc/{pid}/fd")) == ["0", "1", "2"]
    finally:
        os.kill(pid, signal.SIGKILL)
    await read_all(fd)
    assert await exits.of(pid) == -signal.SIGKILL


async def test_the_exit_status_comes_back_and_the_shell_starts_with_default_signals(
        launcher: tuple[la.Launcher, Exits]) -> None:
    lau, exits = launcher
    pid, fd = await lau.spawn(["/bin/sh", "-c", "exec grep -E '^Sig(Ign|Blk)' /proc/self/status"
                               "; exit 3"], 100, 30)
    out = (await read_all(fd)).decode()
    # Python ignores SIGPIPE and the launcher SIGHUP/SIGINT, and the test runner may ignore
    # more: none of that reaches a shell (of the signals a program can set: glibc reserves
    # 32 and 33, which a CI runner was seen to pass down ignored)
    settable = sum(1 << (int(sig) - 1) for sig in signal.valid_signals())
    masks = dict(re.findall(r"^(SigIgn|SigBlk):\s*([0-9a-f]+)", out, re.M))
    assert int(masks["SigIgn"], 16) & settable == 0, out
    assert int(masks["SigBlk"], 16) == 0, out
    assert await exits.of(pid) == 0
    pid, fd = await lau.spawn(["/bin/sh", "-c", "stty size; exit 3"], 100, 30)
    assert b"30 100" in await read_all(fd)
    assert await exits.of(pid) == 3


async def test_orphans_stay_under_the_launcher_in_the_clients_tree(
        launcher: tuple[la.Launcher, Exits]) -> None:
    lau, exits = launcher
    # the shell waits until its child has left the session (or the hang-up at its exit
    # could kill it first), then exits: the child is an orphan
    pid, fd = await lau.spawn(["/bin/sh", "-c", "setsid sleep 1000 </dev/null >/dev/null 2>&1 &"
                               " while [ \"$(tr '\\0' ' ' </proc/$!/cmdline)\" != 'sleep 1000 ' ];"
                               " do :; done; echo orphan=$!"], 80, 24)
    out = (await read_all(fd)).decode()
    orphan = int(out.split("orphan=")[1].split()[0])
    try:
        assert await exits.of(pid) == 0
        assert ppid(orphan) == lau.pid  # a subreaper: not init, where nobody could find it
        assert orphan in reaper.descendants()  # what the client's kill_all walks
    finally:
        os.kill(orphan, signal.SIGKILL)
    assert await exits.of(orphan) == -signal.SIGKILL


async def test_a_killed_launcher_is_replaced_at_the_next_shell(
        launcher: tuple[la.Launcher, Exits]) -> None:
    lau, exits = launcher
    first = lau.pid
    os.kill(first, signal.SIGKILL)
    async with asyncio.timeout(3 * T):
        while lau.pid:  # the client sees its socket close
            await asyncio.sleep(0.01)
    os.waitpid(first, 0)
    pid, fd = await lau.spawn(["/bin/sh", "-c", "echo up; read x; exit 5"], 80, 24)
    await read_until(fd, b"up")
    assert lau.pid not in (0, first) and ppid(pid) == lau.pid
    os.write(fd, b"\n")
    await read_all(fd)
    assert await exits.of(pid) == 5


async def test_a_shell_that_cannot_start_is_an_error_not_a_hang(
        launcher: tuple[la.Launcher, Exits]) -> None:
    lau, exits = launcher
    pid, fd = await lau.spawn(["/nonexistent/shell"], 80, 24)
    await read_all(fd)
    assert await exits.of(pid) == 127  # exec failed in the child
    assert lau.pid  # the launcher itself is fine
