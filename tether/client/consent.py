"""Consent prompts on the customer's terminal: one at a time, default no.

Before each prompt, pending keystrokes are flushed (``tcflush``) so that
nothing typed earlier, or injected by a terminal answerback, can answer it.
No terminal, no answer within the timeout, or anything but ``y``/``yes`` is
a no. Names and reasons from the broker are untrusted and shown cleaned.
"""

from __future__ import annotations

import asyncio
import os
import sys
import termios
from collections.abc import Callable
from dataclasses import dataclass

from ..protocol.sanitize import clean_text

WORDING = {
    "session": "{who} wants to start a remote support session with this computer. "
               "Allow? (They will see this computer's name, system and your user name.)",
    "shell": 'Allow {who} to open a shell with full access to your account "{user}"?',
}
MAX_REFUSALS = 3


@dataclass(frozen=True)
class Answer:
    allow: bool
    reason: str  # "yes", "no", "timeout", "no terminal", "refused 3 times"


def who(technician: str, org: str) -> str:
    name = clean_text(technician, 80) or "An unnamed technician"
    org = clean_text(org, 80)
    return f"{name} ({org})" if org else name


class Prompter:
    def __init__(self, timeout: float, say: Callable[[str], None]) -> None:
        self.timeout = timeout
        self._lock = asyncio.Lock()
        self._refusals: dict[str, int] = {}
        self._say = say
        self.interactive = sys.stdin.isatty()

    async def ask(self, kind: str, question: str) -> Answer:
        async with self._lock:  # one prompt at a time
            if self._refusals.get(kind, 0) >= MAX_REFUSALS:
                self._say(f"\r\nRefused without asking (you said no {MAX_REFUSALS} times): "
                          f"{question}\r\n")
                return Answer(False, "refused 3 times")
            if not self.interactive:
                self._say(f"\r\nNo terminal to ask you on, so this is refused: {question}\r\n")
                answer = Answer(False, "no terminal")
            else:
                answer = await self._ask_tty(question)
            if not answer.allow:
                self._refusals[kind] = self._refusals.get(kind, 0) + 1
            return answer

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
            return Answer(False, "timeout")
        finally:
            loop.remove_reader(fd)
        text = line.split(b"\n", 1)[0].decode(errors="replace").strip().lower()
        if text in ("y", "yes"):
            self._say("Allowed.\r\n")
            return Answer(True, "yes")
        self._say("Refused.\r\n")
        return Answer(False, "no")
