"""The catalogue of audit action names, and what the core needs of the log.

Every ``append`` in the broker names an action from here (a test reads the
source and checks), so an auditor's filter, the timeline's markers and the
export know the full vocabulary. Grouped by what they describe.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ...protocol.checkpoint import Checkpoint

BROKER = frozenset({"broker.started", "broker.stopped"})
#: ``client.connections`` and ``code.redeem_failed`` are summaries (per address, window)
CLIENT = frozenset({"client.connections", "code.issued", "code.redeem_failed"})
SESSION = frozenset({"session.claimed", "session.consented", "session.refused",
                     "session.consent_timeout", "session.client_lost", "session.resumed",
                     "session.ended"})
CHANNEL = frozenset({"channel.requested", "channel.consented", "channel.refused",
                     "channel.consent_timeout", "channel.failed", "channel.agent_connected",
                     "channel.viewer_attached", "channel.viewer_detached", "channel.opened",
                     "channel.closed"})
RECORDING = frozenset({"recording.started", "recording.sealed",
                       "recording.purged", "recording.accessed"})
#: what an admin did to an account on the admin page, by the page's action
ADMIN_USER_ACTIONS = {"disable": "admin.user_disable", "enable": "admin.user_enable",
                      "role": "admin.user_role", "totp": "admin.user_totp"}
USER = frozenset({"user.signed_in", "user.signed_out", "user.signin_failed", "user.changed",
                  "user.revoked", "admin.user_added", "admin.delays_cleared",
                  *ADMIN_USER_ACTIONS.values()})
AUDITOR = frozenset({"audit.viewed", "audit.exported", "access.denied"})

ACTIONS = BROKER | CLIENT | SESSION | CHANNEL | RECORDING | USER | AUDITOR


class AuditSink(Protocol):
    """The audit log as the core uses it (``log.AuditLog`` implements it)."""

    failure_hooks: list[Callable[[Exception], None]]

    async def append(self, action: str, *, actor: str, session_id: str | None = None,
                     ip: str | None = None, **detail: Any) -> int: ...

    async def checkpoint(self, reason: str) -> Checkpoint | None: ...
