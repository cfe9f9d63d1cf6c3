"""Clients that came and went without a session, audited as one summary per address.

A hello from an unknown client is not an action of anyone the audit log
answers for, and one address can send thousands of them: one event each would
let an outsider fill the disk (and, through the disk guard, stop every
technician's shells). So arrivals, refusals and departures of clients that
never reached a session are counted here and written as one
``client.connections`` event per address and window, like failed codes.
What does reach the log one by one, before the action happens (the log fails
closed): every ``code.issued``, every session event and every consent.
"""

from __future__ import annotations

from collections import Counter

from ..audit.actions import AuditSink

#: what is counted per address (the fields of the summary event)
CONNECTED, REFUSED, LEFT = "connected", "refused_busy", "left_without_session"


class Arrivals:
    def __init__(self) -> None:
        self._counts: dict[str, Counter[str]] = {}

    def note(self, ip: str, what: str) -> None:
        self._counts.setdefault(ip, Counter())[what] += 1

    async def flush(self, audit: AuditSink, window_s: float) -> None:
        """One event per address seen since the last flush (none if nothing came)."""
        counts, self._counts = self._counts, {}
        for ip, seen in counts.items():
            await audit.append("client.connections", actor="client", ip=ip,
                               window_s=window_s, connected=seen[CONNECTED],
                               refused_busy=seen[REFUSED], left_without_session=seen[LEFT])
