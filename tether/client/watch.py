"""Watch mode: the customer sees the shell's output live, with an indicator.

Output passes :class:`WatchFilter` (text, CR/LF/TAB/BS and colours only), so
nothing from the customer's shell or from the broker can move the cursor
onto the indicator, set the title, write the clipboard or query the
terminal. The indicator lives on the last row, outside a scroll region.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import BinaryIO

from ..protocol.sanitize import WatchFilter


class Watcher:
    def __init__(self, out: BinaryIO | None = None, enabled: bool = True) -> None:
        self.out = out or sys.stdout.buffer
        self.enabled = enabled
        self.tty = enabled and os.isatty(self.out.fileno())
        self.indicator = ""
        self._filters: dict[str, WatchFilter] = {}

    def _rows(self) -> int:
        return max(3, shutil.get_terminal_size((80, 24)).lines)

    def _write(self, data: bytes) -> None:
        try:
            self.out.write(data)
            self.out.flush()
        except (BlockingIOError, BrokenPipeError):
            pass  # the customer's terminal is gone or stalled; the shell keeps going

    def set_indicator(self, text: str) -> None:
        """Show (or with ``""`` remove) the persistent status line."""
        if not self.tty:
            if text:
                self._write(f"\n*** {text} ***\n".encode())
            self.indicator = text
            return
        rows = self._rows()
        if text and not self.indicator:
            self._write(f"\n\x1b[1;{rows - 1}r\x1b[{rows - 1};1H".encode())
        self.indicator = text
        if text:
            self._draw()
        else:
            self._write(f"\x1b7\x1b[r\x1b[{rows};1H\x1b[2K\x1b8\n".encode())

    def _draw(self) -> None:
        rows = self._rows()
        self._write(f"\x1b7\x1b[{rows};1H\x1b[2K\x1b[1;97;41m {self.indicator} \x1b[0m\x1b8"
                    .encode())

    def output(self, channel: str, data: bytes) -> None:
        if not self.enabled:
            return
        filt = self._filters.setdefault(channel, WatchFilter())
        clean = filt.feed(data)
        if clean:
            self._write(clean)
            if self.tty and self.indicator:
                self._draw()

    def forget(self, channel: str) -> None:
        self._filters.pop(channel, None)
