"""The end of a session as the customer reads it: what was stopped, what may have escaped.

When the first shell of a session is about to start, the client notes the time (in
clock ticks after boot) and takes a :mod:`~tether.client.persistence` snapshot. At the
session's end, after the client's tree was killed, it lists the processes of the
customer's user started since then and still running outside the tree, and what
changed in the snapshot (:mod:`~tether.client.escapes` decides both), says them with a
command to stop the processes, writes them to the local log, and keeps the list in
the state directory: the next start warns, before showing a code, about those still
running. Nothing listed is killed: the list holds programs the customer opened too.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Collection, Iterable
from pathlib import Path

from . import escapes, persistence, procfs
from .journal import Journal

STATE_FILE = "escaped.json"


class Aftercare:
    def __init__(self, journal: Journal, say: Callable[[str], None], state_dir: Path,
                 user: str) -> None:
        self.journal = journal
        self.say = say
        self.state = state_dir / STATE_FILE
        self.user = user
        self.since: int | None = None  # tick before the session's first shell started
        self.before: persistence.Snapshot | None = None
        self.stopped: set[int] = set()  # PIDs of the technician's processes when stopped
        self._lock = asyncio.Lock()
        # the client's ancestors now, while the customer's terminal is still there
        self._ancestors = set(procfs.ancestors())

    async def before_shell(self) -> None:
        """Awaited before each shell starts: the session's first one starts the watch."""
        async with self._lock:  # a second shell waits until the snapshot is taken
            if self.since is None:
                before = await asyncio.to_thread(persistence.snapshot)
                self.before, self.since = before, procfs.now_ticks()

    def count_stopped(self, pids: Iterable[int]) -> None:
        self.stopped.update(pids)

    def finish(self, tree: Collection[int]) -> None:
        """At the session's end, after the client's tree was killed (``tree``: what is
        left of it, reported as survivors already)."""
        since, before, stopped = self.since, self.before, len(self.stopped - set(tree))
        self.since, self.before = None, None
        self.stopped.clear()
        if since is None or before is None:
            return  # no shell in this session: nothing to account for
        exclude = {os.getpid(), *tree, *self._ancestors, *procfs.ancestors()}
        listed = escapes.escaped(procfs.processes(since), since=since, uid=os.getuid(),
                                 exclude=exclude)
        after = persistence.snapshot()
        changed = escapes.changes(before.digests, after.digests)
        unchecked = sorted(set(before.unchecked) | set(after.unchecked))
        for line in escapes.summary(stopped=stopped, escaped=listed, changed=changed,
                                    checked=after.checked, unchecked=unchecked,
                                    user=self.user):
            self.say(line)
        self.journal.write(
            "after_session", stopped=stopped,
            escaped=[{"pid": p.pid, "start": p.start, "command": p.command}
                     for p in listed[:escapes.MAX_KEPT]],
            kill=escapes.kill_command(listed) if listed else "",
            changed=[{"what": c.what, "how": c.how} for c in changed],
            checked=list(after.checked), unchecked=unchecked)
        self._keep(listed)

    # --- the state file ---------------------------------------------------------------

    def _load(self) -> list[escapes.Listed]:
        try:
            text = self.state.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return []
        return escapes.load_state(text, procfs.boot_id())

    def _running(self, listed: list[escapes.Listed]) -> list[escapes.Listed]:
        live = {p.pid: start for p in listed if (start := procfs.start_of(p.pid)) is not None}
        return escapes.still_running(listed, live)

    def _save(self, listed: list[escapes.Listed]) -> None:
        if not listed:
            self.state.unlink(missing_ok=True)
            return
        self.state.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.state.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(escapes.dump_state(listed, procfs.boot_id()))
        os.replace(tmp, self.state)

    def _keep(self, listed: list[escapes.Listed]) -> None:
        known = {(p.pid, p.start) for p in listed}
        older = [p for p in self._running(self._load()) if (p.pid, p.start) not in known]
        try:
            self._save(older + listed)
        except OSError as exc:
            self.journal.write("state_not_saved", error=exc.strerror or "error")

    def warn_at_start(self) -> None:
        """Before any code is shown: the processes listed last time that still run."""
        running = self._running(self._load())
        if running:
            for line in escapes.warning(running):
                self.say(line)
            self.journal.write("still_running", pids=[p.pid for p in running],
                               kill=escapes.kill_command(running))
        try:
            self._save(running)
        except OSError as exc:
            self.journal.write("state_not_saved", error=exc.strerror or "error")
