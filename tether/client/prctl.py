"""The two ``prctl(2)`` calls the client and its shell launcher make (Linux; no-ops elsewhere).

Kept apart from :mod:`~tether.client.reaper` so the launcher process
(:mod:`~tether.client.zygote`) imports nothing but the standard library and this.
"""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, arg: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(option, arg, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def become_subreaper() -> bool:
    """Orphans of our descendants (``setsid``, double forks) are re-parented to us."""
    return _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent() -> bool:
    """SIGKILL this process when its parent dies."""
    return _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
