"""What the client reads about processes from ``/proc`` (Linux): one parser, no policy.

Start times are kept as the kernel gives them, clock ticks after boot (field 22 of
``/proc/PID/stat``): exact, so a PID and its start time name one process for as long
as the machine runs, unlike wall-clock times derived from a boot time that moves with
clock adjustments. :mod:`~tether.client.reaper` walks the tree with it;
:mod:`~tether.client.aftercare` lists what may have escaped it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .escapes import Proc

CLK_TCK = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000
MAX_COMMAND = 200


@dataclass(frozen=True)
class Stat:
    pid: int
    state: str
    ppid: int
    flags: int
    start: int  # clock ticks after boot


def pids() -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit()]


def stat(pid: int) -> Stat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return Stat(pid, fields[0].decode(), int(fields[1]), int(fields[6]), int(fields[19]))
    except (IndexError, ValueError):
        return None


def uids(pid: int) -> tuple[int, int] | None:
    """(real, effective) user id."""
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                if line.startswith(b"Uid:"):
                    real, effective = line.split()[1:3]
                    return int(real), int(effective)
    except (OSError, ValueError):
        pass
    return None


def command(pid: int) -> str:
    """The command line (or ``[name]`` when it has none), shortened."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
        text = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        if not text:
            with open(f"/proc/{pid}/comm", "rb") as f:
                text = "[" + f.read().strip().decode(errors="replace") + "]"
    except OSError:
        return "?"
    return text[:MAX_COMMAND]


def now_ticks() -> int:
    """Now, on the scale of :attr:`Stat.start`, rounded down: a process started from
    now on has a start tick at least this."""
    with open("/proc/uptime", "rb") as f:
        seconds = float(f.read().split()[0])
    return int(seconds * CLK_TCK)


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def ancestors(pid: int | None = None) -> list[int]:
    """The parent chain of ``pid`` (default: this process), nearest first."""
    found: list[int] = []
    current = stat(os.getpid() if pid is None else pid)
    for _ in range(4096):
        if current is None or current.ppid <= 0:
            break
        found.append(current.ppid)
        current = stat(current.ppid)
    return found


def processes(since: int) -> list[Proc]:
    """Every live user-space process started at or after tick ``since``."""
    found: list[Proc] = []
    for pid in pids():
        st = stat(pid)
        if st is None or st.start < since or st.state in ("Z", "X") or st.flags & PF_KTHREAD:
            continue
        ids = uids(pid)
        if ids is None:
            continue
        found.append(Proc(pid=pid, ppid=st.ppid, uids=ids, start=st.start,
                          command=command(pid)))
    return found


def start_of(pid: int) -> int | None:
    """The start tick of a live (not zombie) process, or None."""
    st = stat(pid)
    return None if st is None or st.state in ("Z", "X") else st.start
