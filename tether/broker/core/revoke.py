"""Revocation: a user who lost their access loses it in the core at once.

The accounts watcher (``auth/accounts.py``) publishes a revocation; the core
listens (registered at start-up) and ends the user's sessions and the
channels they view on others' sessions. The core is never called by the
accounts layer directly, and the web layer closes its console sockets from
the same event.
"""

from __future__ import annotations

from .channels import Channels
from .context import Context
from .lifecycle import Lifecycle


class Revocation:
    def __init__(self, ctx: Context, lifecycle: Lifecycle, channels: Channels) -> None:
        self.ctx = ctx
        self.lifecycle = lifecycle
        self.channels = channels

    async def revoked(self, user_id: int, reason: str) -> int:
        """End what ``user_id`` has open; returns how many sessions ended."""
        mine = [s for s in self.ctx.sessions.values()
                if s.technician.id == user_id and s.live]
        for session in mine:
            await self.lifecycle.end(session, "broker",
                                     f"the technician's access ended: {reason}")
        for channel, pump in list(self.ctx.pumps.items()):  # e.g. an admin on another's channel
            if pump.viewer_user is not None and pump.viewer_user.id == user_id:
                await self.channels.close(channel, "broker",
                                          f"the viewer's access ended: {reason}")
        return len(mine)
