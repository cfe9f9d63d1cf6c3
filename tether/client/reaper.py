"""Make sure nothing the technician started outlives the session.

The client makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``), so a
process that leaves the shell's session with ``setsid`` or double-forks is
re-parented to the client instead of init, and :func:`kill_all` can still
find and kill it. Survivors (e.g. processes that changed user) are reported.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from collections.abc import Callable

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name may contain spaces and parentheses: split after the last ')'
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 1 and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry))
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
             deadline: float = 3.0) -> list[int]:
    """SIGKILL every descendant, reap them; return the PIDs still alive."""
    end = time.monotonic() + deadline
    alive: list[int] = []
    while time.monotonic() < end:
        alive = [p for p in descendants() if not exclude(p)]
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
    return [p for p in descendants() if not exclude(p)]
