"""The customer's decisions: what is asked, what is refused unasked, what was allowed.

Consent is enforced here, on the customer's machine. Every question is worded
from the client's own tables (:mod:`tether.protocol.channels` and
:mod:`tether.protocol.consent`), never from broker text; a kind the client does
not know, or has no module for, is refused without a prompt. The decisions are
kept in a :class:`~tether.protocol.consent.Ledger`, so a ``channel_ready`` the
customer did not allow finds nothing here and is refused.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Collection
from typing import Protocol

from ..protocol import messages as m
from ..protocol.channels import CAPABILITIES, KINDS, opened_by
from ..protocol.consent import MAX_REFUSALS, Ledger, Refusal, prompt, who
from .consent import Answer


class Asker(Protocol):
    async def ask(self, question: str) -> Answer: ...


class Decisions:
    def __init__(self, asker: Asker, say: Callable[[str], None], *, user: str,
                 allow_root: bool, kinds: Collection[str]) -> None:
        self.asker = asker
        self.say = say
        self.user = user
        self.allow_root = allow_root
        #: the kinds this client can run (``channels.RUNNERS``)
        self.kinds = frozenset(kinds)
        self.ledger = Ledger()
        self.session_allowed = False
        # One question at a time, and the refusal count is read under the same lock:
        # a request queued behind the third no is refused without asking.
        self._lock = asyncio.Lock()

    def new_session(self) -> None:
        """A technician claimed the code: nothing allowed yet, no refusals counted."""
        self.session_allowed = False
        self.ledger.reset()

    async def session(self, claimed: m.Claimed) -> Answer:
        async with self._lock:
            answer = await self.asker.ask(prompt("session", claimed.technician, claimed.org))
        self.session_allowed = answer.allow
        return answer

    async def channel(self, request: m.ChannelRequest) -> Answer:
        if not self.session_allowed:
            return Answer(False, Refusal.NO_SESSION)
        row = KINDS.get(request.kind)
        if row is None or not row.available or row.name not in self.kinds:
            return Answer(False, Refusal.UNSUPPORTED)
        capability = CAPABILITIES[row.opens]
        if capability.name == "shell" and os.geteuid() == 0 and not self.allow_root:
            self.say(f"{who(request.technician, request.org)} asked for a shell, but this "
                     "client runs as root; refused (start it with --allow-root to allow a "
                     "root shell).\n")
            return Answer(False, Refusal.ROOT)
        question = prompt(capability.wording, request.technician, request.org, self.user)
        async with self._lock:
            if self.ledger.exhausted(capability.name):
                self.say(f"\r\nRefused without asking (you said no {MAX_REFUSALS} times): "
                         f"{question}\r\n")
                return Answer(False, Refusal.REFUSED_BEFORE)
            answer = await self.asker.ask(question)
            # the session may have ended while the customer was reading the question
            if answer.allow and not self.session_allowed:
                return Answer(False, Refusal.NO_SESSION)
            self.ledger.decide(capability.name, request.channel, answer.allow)
        return answer

    def allowed_kind(self, channel: str) -> str | None:
        """The kind the customer allowed on ``channel`` (None: never open it)."""
        row = opened_by(self.ledger.allowed.get(channel, set()))
        return row.name if row is not None and row.name in self.kinds else None

    def closed(self, channel: str) -> None:
        self.ledger.closed(channel)

    def close_all(self) -> None:
        """Every channel ends: nothing stays allowed (refusals still count)."""
        self.ledger.close_all()

    def end(self) -> None:
        self.session_allowed = False
        self.close_all()
