"""Stop every process in the client's tree, and say exactly what was stopped.

The client makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), and so does
its shell launcher (:mod:`~tether.client.zygote`): a process that leaves the shell's
session with ``setsid`` or double-forks is re-parented to one of them instead of
init, and :func:`kill_all` can still find and kill it. What it cannot reach is
reported as it is: survivors (e.g. processes that changed user), and processes
started through a daemon the customer already runs (a tmux server, a session
manager), which are not in the tree at all; :mod:`~tether.client.aftercare` lists
those instead, without killing them.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass

from . import procfs
from .prctl import become_subreaper

__all__ = ["Stopped", "become_subreaper", "descendants", "kill_all", "reap"]


@dataclass(frozen=True)
class Stopped:
    """What :func:`kill_all` did: PIDs that were in the tree and are gone, and the rest."""

    stopped: tuple[int, ...] = ()
    survivors: tuple[int, ...] = ()


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid in procfs.pids():
        st = procfs.stat(pid)
        if st is not None and st.state != "Z":
            children.setdefault(st.ppid, []).append(pid)
    return children


def descendants(root: int | None = None) -> list[int]:
    root = os.getpid() if root is None else root
    tree = _children_map()
    found: list[int] = []
    stack = list(tree.get(root, []))
    while stack:
        pid = stack.pop()
        found.append(pid)
        stack.extend(tree.get(pid, []))
    return found


def reap() -> list[tuple[int, int]]:
    """Collect every exited child without blocking: [(pid, status)]."""
    done = []
    for _ in range(10_000):
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        done.append((pid, status))
    return done


def kill_all(exclude: Callable[[int], bool] = lambda pid: False,
             deadline: float = 3.0, seen: tuple[int, ...] = ()) -> Stopped:
    """SIGKILL every descendant but the excluded ones (and what they started is still a
    descendant: only the excluded PID itself is spared), reap them.

    ``seen``: PIDs already known to be in the tree (taken before other kills began), so
    they count as stopped even if they were gone before this call looked.
    """
    end = time.monotonic() + deadline
    tree = set(seen)
    alive: list[int] = []
    while time.monotonic() < end:
        alive = [p for p in descendants() if not exclude(p)]
        tree.update(alive)
        if not alive:
            break
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.02)
        reap()
    reap()
    survivors = [p for p in descendants() if not exclude(p)]
    return Stopped(stopped=tuple(sorted(tree - set(survivors))), survivors=tuple(survivors))
