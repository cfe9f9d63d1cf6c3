"""Consent prompts on the customer's terminal: one at a time, default no.

Before each prompt, pending keystrokes are flushed (``tcflush``) so that
nothing typed earlier, or injected by a terminal answerback, can answer it.
No terminal, no answer within the timeout, or anything but ``y``/``yes`` is
a no. This module is only the terminal I/O: the questions are worded by
:mod:`tether.protocol.consent` (never from broker text) and the decisions
are kept in its ``Ledger`` by the caller (``app.py``).
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass

from ..protocol.consent import Refusal

YES = "yes"


@dataclass(frozen=True)
class Answer:
    allow: bool
    reason: str  # YES, or a Refusal: "no", "timeout", "no terminal"


class Prompter:
    def __init__(self, timeout: float, say: Callable[[str], None]) -> None:
        self.timeout = timeout
        self._lock = asyncio.Lock()
        self._say = say
        self.interactive = sys.stdin.isatty()

    async def ask(self, question: str) -> Answer:
        """Ask one fixed question; anything but a yes in time is a no."""
        async with self._lock:  # one prompt at a time
            if not self.interactive:
                self._say(f"\r\nNo terminal to ask you on, so this is refused: {question}\r\n")
                return Answer(False, Refusal.NO_TERMINAL)
            return await self._ask_tty(question)

    async def _ask_tty(self, question: str) -> Answer:
        fd = sys.stdin.fileno()
        termios.tcflush(fd, termios.TCIFLUSH)  # flush first, then print: never after
        self._say(f"\r\n{question} [y/N] ")
        loop = asyncio.get_running_loop()
        line = bytearray()
        got_line: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                chunk = os.read(fd, 1024)
            except OSError:
                chunk = b""
            if not chunk:
                if not got_line.done():
                    got_line.set_result(None)
                return
            line.extend(chunk)
            if (b"\n" in line or len(line) > 64) and not got_line.done():
                got_line.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await asyncio.wait_for(got_line, self.timeout)
        except TimeoutError:
            self._say("\r\nNo answer: refused.\r\n")
            return Answer(False, Refusal.TIMEOUT)
        except asyncio.CancelledError:  # the connection or the session ended meanwhile
            self._say("\r\nQuestion withdrawn: nothing was allowed.\r\n")
            raise
        finally:
            loop.remove_reader(fd)
        text = line.split(b"\n", 1)[0].decode(errors="replace").strip().lower()
        if text in ("y", "yes"):
            self._say("Allowed.\r\n")
            return Answer(True, YES)
        self._say("Refused.\r\n")
        return Answer(False, Refusal.NO)
