"""What may have escaped a session, decided from snapshots: pure, no I/O.

A technician's shell runs as the customer, so it can start programs through daemons
the customer already runs (``tmux new-session -d`` on the customer's tmux server, a
session manager, ``systemd-run --user``) or leave something that starts later (a
crontab line, a start-up file). Those are not descendants of the client, which can
therefore neither stop them nor vouch for them. So the client never claims that
"nothing is still running"; it lists, and kills nothing by itself:

* processes of the customer's user started since the first shell of the session
  opened and still running outside the client's tree (:func:`escaped`); programs the
  customer opened in that time appear too, and the wording says so;
* persistence changed between the first shell and the end (:func:`changes`);
* at the next start, which processes listed last time are still running
  (:func:`still_running`), a PID counting only with its start time, so a reused PID is
  not mistaken for the listed process.

:mod:`~tether.client.procfs` and :mod:`~tether.client.persistence` take the
snapshots, :mod:`~tether.client.aftercare` says and keeps the result.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from ..protocol.sanitize import clean_text

#: most processes shown on the customer's terminal (all are in the local log)
MAX_SHOWN = 200
#: most processes kept in the state file for the next start's warning
MAX_KEPT = 1000


@dataclass(frozen=True)
class Proc:
    """One live process, as ``/proc`` shows it."""

    pid: int
    ppid: int
    uids: tuple[int, int]  # real, effective
    start: int  # clock ticks after boot
    command: str


@dataclass(frozen=True)
class Listed:
    """A process listed at the end of a session: PID and start time name it."""

    pid: int
    start: int
    command: str


@dataclass(frozen=True)
class Change:
    what: str  # "~/.bashrc", "crontab", ...
    how: str  # "added", "removed", "changed"


def escaped(procs: Sequence[Proc], *, since: int, uid: int,
            exclude: Collection[int]) -> list[Listed]:
    """Processes of ``uid`` (real or effective) started at or after ``since`` and not in
    ``exclude`` (the client, its ancestors and its own tree), oldest first.

    Other users' processes never appear: uid-0 system services are listed only when
    the customer is root (and then every process of theirs is the customer's too).
    """
    found = [Listed(p.pid, p.start, p.command) for p in procs
             if p.start >= since and uid in p.uids and p.pid not in exclude]
    return sorted(found, key=lambda p: (p.start, p.pid))


def changes(before: Mapping[str, str], after: Mapping[str, str]) -> list[Change]:
    """What differs between two persistence snapshots (name -> digest; absent = missing)."""
    found: list[Change] = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        found.append(Change(name, "added" if old is None else "removed" if new is None
                            else "changed"))
    return found


def still_running(listed: Sequence[Listed], live: Mapping[int, int]) -> list[Listed]:
    """The listed processes still alive: same PID *and* same start time (``live`` maps
    each PID alive now to its start tick)."""
    return [p for p in listed if live.get(p.pid) == p.start]


# --- the state file (the next start's warning) ------------------------------------------


def dump_state(listed: Sequence[Listed], boot: str) -> str:
    return json.dumps({"boot": boot, "processes": [
        {"pid": p.pid, "start": p.start, "command": p.command} for p in listed[:MAX_KEPT]]})


def load_state(text: str, boot: str) -> list[Listed]:
    """The listed processes of this boot (another boot's PIDs name nothing now).

    The file is in the customer's home, writable by anyone who had their shell, so it
    is parsed strictly and its commands are cleaned before they are shown.
    """
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("boot") != boot:
            return []
        found = []
        for item in data.get("processes", [])[:MAX_KEPT]:
            pid, start = item["pid"], item["start"]
            if not (type(pid) is int and type(start) is int and pid > 0):
                continue
            found.append(Listed(pid, start, clean_text(str(item.get("command", "")), 200)))
        return found
    except (ValueError, TypeError, KeyError, AttributeError):
        return []


# --- what the customer reads ------------------------------------------------------------


def plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else many or word + 'es'}"


def kill_command(listed: Sequence[Listed]) -> str:
    return "kill " + " ".join(str(p.pid) for p in listed)


def process_lines(listed: Sequence[Listed]) -> list[str]:
    lines = [f"  {p.pid:>7}  {clean_text(p.command, 200)}" for p in listed[:MAX_SHOWN]]
    if len(listed) > MAX_SHOWN:
        lines.append(f"  ... and {len(listed) - MAX_SHOWN} more (all of them are in the "
                     "local log)")
    return lines


def summary(*, stopped: int, escaped: Sequence[Listed], changed: Sequence[Change],
            checked: Sequence[str], unchecked: Sequence[str], user: str) -> list[str]:
    """The end-of-session account: only what the client counted or compared."""
    lines = [f"Stopped {plural(stopped, 'process')} of the technician's shells (each shell "
             "and everything started under it that was still running)." if stopped else
             "No process of the technician's shells was left to stop."]
    if escaped:
        lines.append(
            f"Still running, outside what this client can stop: {plural(len(escaped), 'process')}"
            f" of user {user} started since the technician's first shell opened. The "
            "technician could have started them through a program that was already running "
            "(such as tmux); apps you opened yourself in that time appear here too:")
        lines += process_lines(escaped)
        lines.append(f"To stop them: {kill_command(escaped[:MAX_SHOWN])}")
    else:
        lines.append(f"No process of user {user} started since the technician's first "
                     "shell opened is still running outside this client.")
    if changed:
        lines.append("Changed during the session (these can start programs later; check "
                     "them):")
        lines += [f"  {c.what} ({c.how})" for c in changed]
    if checked:
        lines.append(("Checked" if changed else "No change found in") + ": "
                     + ", ".join(checked) + ".")
    if unchecked:
        lines.append("Not checked: " + ", ".join(unchecked) + ".")
    return lines


def warning(listed: Sequence[Listed]) -> list[str]:
    """The next start's warning, shown before any code."""
    return [f"Warning: {plural(len(listed), 'process')} listed at the end of your last "
            "support session still running (started while a technician's shell was open; "
            "apps you opened yourself may be among them):",
            *process_lines(listed),
            f"To stop them: {kill_command(listed[:MAX_SHOWN])}"]
