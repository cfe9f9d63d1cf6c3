"""What the customer sees: a non-blocking terminal writer and watch mode.

Everything the client prints goes through :class:`Terminal`, which never
blocks the event loop: if the customer's terminal stalls (Ctrl-S, a slow
emulator), the shell's live copy is dropped past a bound and a note says so,
while prompts and notices are always kept. A stalled screen must never
freeze the session or the customer's own Ctrl-C.

Watch mode passes output through :class:`WatchFilter` (text, CR/LF/TAB/BS
and readable colours only), so nothing from the customer's shell or from the
broker can move the cursor onto the indicator, set the title, write the
clipboard, query the terminal or make text invisible. The same filtered
stream goes whole into the customer's log (``output`` entries), watched or
not. The indicator lives on the last row, outside a scroll region.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time

from ...protocol.sanitize import WatchFilter
from ..journal import Journal

WATCH_BACKLOG = 1024 * 1024
REDRAW_EVERY = 0.25  # seconds
#: a channel's output kept in the customer's log; beyond it only a count (the log is
#: evidence, not a disk filler: `yes` for a minute would be gigabytes)
OUTPUT_LOG_LIMIT = 64 * 1024 * 1024


class Terminal:
    def __init__(self, fd: int = 1) -> None:
        self.fd = fd
        self.tty = os.isatty(fd)
        self._pending = bytearray()
        self._skipped = False
        self._writer = False
        self._was_blocking = os.get_blocking(fd)
        os.set_blocking(fd, False)

    def write(self, data: bytes, *, droppable: bool = False) -> None:
        if droppable and len(self._pending) > WATCH_BACKLOG:
            self._skipped = True
            return
        if droppable and self._skipped:
            self._skipped = False
            self._pending += b"\r\n[... output skipped: this terminal could not keep up ...]\r\n"
        self._pending += data
        self._flush()

    def text(self, text: str) -> None:
        self.write(text.replace("\r\n", "\n").replace("\n", "\r\n").encode())

    def _flush(self) -> None:
        while self._pending:
            try:
                n = os.write(self.fd, self._pending)
            except BlockingIOError:
                break
            except OSError:  # the terminal is gone: nobody to show it to
                self._pending.clear()
                break
            del self._pending[:n]
        want = bool(self._pending)
        if want != self._writer:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            if want:
                loop.add_writer(self.fd, self._flush)
            else:
                loop.remove_writer(self.fd)
            self._writer = want

    def close(self) -> None:
        """Restore blocking mode and write what is left."""
        if self._writer:
            try:
                asyncio.get_running_loop().remove_writer(self.fd)
            except RuntimeError:
                pass
            self._writer = False
        os.set_blocking(self.fd, self._was_blocking)
        try:
            os.write(self.fd, bytes(self._pending[-65536:]))
        except OSError:
            pass
        self._pending.clear()


class Watcher:
    def __init__(self, term: Terminal, enabled: bool = True,
                 journal: Journal | None = None) -> None:
        self.term = term
        self.enabled = enabled
        self.journal = journal
        self.indicator = ""
        self._drawn = 0.0
        self._filters: dict[str, WatchFilter] = {}
        self._logged: dict[str, int] = {}  # output bytes logged per channel
        self._unlogged: dict[str, int] = {}  # ... and those past OUTPUT_LOG_LIMIT

    def _rows(self) -> int:
        return max(3, shutil.get_terminal_size((80, 24)).lines)

    def set_indicator(self, text: str) -> None:
        """Show (or with ``""`` remove) the persistent status line."""
        if not self.term.tty:
            if text:
                self.term.text(f"\n*** {text} ***\n")
            self.indicator = text
            return
        rows = self._rows()
        if text and not self.indicator:
            self.term.write(f"\r\n\x1b[1;{rows - 1}r\x1b[{rows - 1};1H".encode())
        elif not text and self.indicator:
            self.term.write(f"\x1b7\x1b[r\x1b[{rows};1H\x1b[2K\x1b8\r\n".encode())
        self.indicator = text
        if text:
            self._draw()

    def _draw(self) -> None:
        self._drawn = time.monotonic()
        rows = self._rows()
        self.term.write(f"\x1b7\x1b[{rows};1H\x1b[2K\x1b[1;97;41m {self.indicator} \x1b[0m\x1b8"
                        .encode(), droppable=True)

    def output(self, channel: str, data: bytes) -> None:
        clean = self._filters.setdefault(channel, WatchFilter()).feed(data)
        if clean and self.journal is not None:
            # The customer's own evidence keeps all of it: what the live view skipped
            # (a stalled terminal) and what a CR or BS drew over is still in the log;
            # up to a bound, so a flood (`yes`) cannot fill the customer's disk.
            logged = self._logged.get(channel, 0)
            if logged < OUTPUT_LOG_LIMIT:
                self._logged[channel] = logged + len(clean)
                self.journal.write("output", channel=channel,
                                   text=clean.decode(errors="replace"))
            else:
                self._unlogged[channel] = self._unlogged.get(channel, 0) + len(clean)
        if clean and self.enabled:
            self.term.write(clean, droppable=True)
            # Output cannot reach the indicator's row (no cursor movement passes the
            # filter); redraw now and then anyway, e.g. after the terminal was resized.
            now = time.monotonic()
            if self.term.tty and self.indicator and now - self._drawn > REDRAW_EVERY:
                self._draw()

    def note(self, text: str) -> None:
        """A line of our own between the shell's output (e.g. "hidden input (8 bytes)"):
        never dropped, on a line of its own, in reverse video so it reads as Tether's."""
        if self.enabled:
            self.term.write(f"\r\n\x1b[7m[{text}]\x1b[0m\r\n".encode())

    def forget(self, channel: str) -> None:
        self._filters.pop(channel, None)
        self._logged.pop(channel, None)
        unlogged = self._unlogged.pop(channel, 0)
        if unlogged and self.journal is not None:
            self.journal.write("output_not_logged", channel=channel, bytes=unlogged,
                               limit=OUTPUT_LOG_LIMIT)
