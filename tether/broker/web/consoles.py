"""The console sockets each signed-in user has open (live updates, viewers).

A console socket lives only as long as the login it was opened with: signing
out, an expired login and a revoked account close it, so a browser tab left
open keeps no access its user no longer has.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from ...protocol.errors import Close

#: seconds between two looks for sockets whose login has ended
SWEEP_EVERY = 5.0


class Closable(Protocol):
    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


class Consoles:
    def __init__(self) -> None:
        #: user id -> {socket: hash of the login token it was opened with}
        self.by_user: dict[int, dict[Closable, str]] = {}

    def opened(self, user_id: int, ws: Closable, login: str) -> None:
        self.by_user.setdefault(user_id, {})[ws] = login

    def closed(self, user_id: int, ws: Closable) -> None:
        self.by_user.get(user_id, {}).pop(ws, None)

    def logins(self) -> list[tuple[int, str]]:
        """(user id, login) of every open socket, each pair once."""
        return list({(uid, login) for uid, s in self.by_user.items() for login in s.values()})

    async def close(self, user_id: int, login: str | None, reason: str) -> None:
        """Close one login's sockets (``login`` given), or all of a user's."""
        sockets = self.by_user.get(user_id, {})
        for ws, token in list(sockets.items()):
            if login is None or token == login:
                sockets.pop(ws, None)
                await ws.close(code=Close.AUTH, message=reason.encode()[:120])

    async def revoked(self, user_id: int, reason: str) -> None:
        """Listener for the accounts' revocations: the user's sockets close at once."""
        await self.close(user_id, None, "your access was revoked")

    async def sweep(self, valid: Callable[[str], Awaitable[bool]]) -> None:
        """Close the sockets whose login has ended (idle and absolute limits)."""
        for user_id, login in self.logins():
            if not await valid(login):
                await self.close(user_id, login, "your sign-in expired")
