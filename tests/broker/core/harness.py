"""An in-memory harness for the core: a fake client, fake channel ends, a real
audit log on a temporary SQLite store, and the real :class:`Core`.

No sockets, no processes: a whole session runs in milliseconds, so the core's
races and failure paths can be tried many times over (h11's ConnectionPair
idea: both peers in memory, real logic in between).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tether.broker.audit.log import AuditLog
from tether.broker.auth.rules import User
from tether.broker.config import Config
from tether.broker.core import Agent, Core, Gone, Session
from tether.broker.store.sqlite import Store
from tether.protocol import messages as m

ALICE = User(id=1, name="alice", role="technician", display_name="Alice Martin", org="Acme IT")
MALLORY = User(id=2, name="mallory", role="technician", display_name="Mallory", org="Evil")
ADMIN = User(id=3, name="root", role="admin", display_name="Ada Admin", org="Acme IT")


def config(data: Path, **overrides: Any) -> Config:
    values: dict[str, Any] = dict(code_ttl=30.0, pair_timeout=2.0, consent_wait=2.0,
                                  resume_window=1.0, min_free_mb=0, new_codes_per_ip=1000)
    values.update(overrides)
    return Config(data=data, **values)


class FakeClient:
    """A customer's control connection: what the broker sends lands in ``inbox``."""

    def __init__(self, core: Core, ip: str = "127.0.0.9") -> None:
        self.core = core
        self.inbox: asyncio.Queue[m.Message] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None
        #: a send now fails as on a closing transport
        self.closing = False
        self.resume_secret = ""
        self.agent = Agent(send=self._send, close=self._close, ip=ip)

    async def _send(self, msg: m.Message) -> None:
        if self.closing or self.closed:
            raise Gone("closing transport")
        self.inbox.put_nowait(msg)

    async def _close(self, code: int, reason: str) -> None:
        """The broker closes the connection: as the WebSocket handler would, the
        connection then reports itself gone."""
        if self.closed is None:
            self.closed = (code, reason)
            await self.core.client_gone(self.agent, reason)

    async def expect(self, kind: type[m.Message], timeout: float = 2.0) -> Any:
        """The next message, which must be of ``kind`` (others before it are skipped)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.inbox.get()
                if isinstance(msg, kind):
                    return msg

    def pending(self) -> list[m.Message]:
        out = []
        while not self.inbox.empty():
            out.append(self.inbox.get_nowait())
        return out


class FakeEnd:
    """One end of a channel: frames put in ``incoming`` reach the pump."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[bytes | str | None] = asyncio.Queue()
        self.sent: asyncio.Queue[bytes | str] = asyncio.Queue()
        self.closed: tuple[int, str] | None = None

    async def frames(self) -> AsyncIterator[bytes | str]:
        while True:
            frame = await self.incoming.get()
            if frame is None:
                return
            yield frame

    async def send(self, frame: bytes | str) -> None:
        if self.closed:
            raise Gone("closed")
        self.sent.put_nowait(frame)

    async def close(self, code: int, reason: str) -> None:
        if self.closed is None:
            self.closed = (code, reason)
        self.incoming.put_nowait(None)

    async def finish(self) -> None:
        if self.closed is None:
            self.closed = (1000, "")

    def hang_up(self) -> None:
        self.incoming.put_nowait(None)

    async def received(self, timeout: float = 2.0) -> bytes | str:
        async with asyncio.timeout(timeout):
            return await self.sent.get()

    async def output(self, want: bytes, timeout: float = 2.0) -> bytes:
        """Binary frames until ``want`` has been seen (controls are skipped)."""
        got = b""
        async with asyncio.timeout(timeout):
            while want not in got:
                frame = await self.sent.get()
                if isinstance(frame, bytes):
                    got += frame
        return got


class BrokenStore:
    """The real store, whose audit writes fail while ``broken`` is set."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self.broken = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def append_audit(self, rows: Any, checkpoint: Any = None) -> None:
        if self.broken:
            raise OSError(28, "No space left on device")
        await self._store.append_audit(rows, checkpoint)


@dataclass
class Harness:
    core: Core
    audit: AuditLog
    store: BrokenStore
    data: Path
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)

    async def events(self) -> list[dict[str, Any]]:
        rows = await self.store.audit_events()
        for row in rows:
            row["detail"] = json.loads(row["detail"])
        return rows

    async def actions(self, session_id: str | None = None) -> list[str]:
        return [e["action"] for e in await self.events()
                if session_id is None or e["session_id"] == session_id]

    async def connect(self, ip: str = "127.0.0.9") -> tuple[FakeClient, str]:
        client = FakeClient(self.core, ip)
        await self.core.client_hello(client.agent, m.Hello(version="test", os="Linux"))
        code = (await client.expect(m.CodeIssued)).code
        return client, code

    async def session(self, user: User = ALICE) -> tuple[FakeClient, Session]:
        """A claimed session the customer has said yes to."""
        client, code = await self.connect()
        session = await self.core.redeem(user, code, "127.0.0.1")
        await client.expect(m.Claimed)
        await self.core.client_message(client.agent, m.SessionDecision(
            allow=True, reason="yes", machine="bob-laptop", user="bob", os="Linux"))
        client.resume_secret = (await client.expect(m.ResumeToken)).secret
        return client, session

    async def ask(self, client: FakeClient, session: Session, user: User = ALICE,
                  allow: bool | None = True) -> tuple[str, m.ChannelReady | None]:
        """Request a terminal and answer for the customer (None: don't answer)."""
        channel = await self.core.request_channel(user, session, "terminal", 80, 24,
                                                  "127.0.0.1")
        request = await client.expect(m.ChannelRequest)
        assert request.channel == channel.id
        if allow is None:
            return channel.id, None
        await self.core.client_message(client.agent, m.ChannelDecision(
            channel=channel.id, allow=allow, reason="yes" if allow else "no"))
        if not allow:
            return channel.id, None
        return channel.id, await client.expect(m.ChannelReady)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    async def open(self, client: FakeClient, session: Session,
                   user: User = ALICE) -> tuple[str, FakeEnd, FakeEnd]:
        """A terminal channel, paired: (channel id, customer's end, viewer's end)."""
        cid, ready = await self.ask(client, session, user)
        assert ready is not None
        agent_end, viewer_end = FakeEnd(), FakeEnd()
        self.spawn(self.core.serve_agent_end(ready.secret, agent_end, "127.0.0.9"))
        secret = self.core.viewer_secret(user, session, cid)
        self.spawn(self.core.serve_viewer_end(secret, viewer_end, user, "127.0.0.1"))
        await until(lambda: session.channels[cid].state == "open")
        return cid, agent_end, viewer_end


async def until(predicate: Any, timeout: float = 2.0) -> None:
    """Wait (bounded) for a condition the core reaches on its own."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.005)


async def make(data: Path, **overrides: Any) -> Harness:
    real = await Store.open(data / "tether.db")
    for user in (ALICE, MALLORY, ADMIN):  # ids 1, 2, 3: sessions refer to their technician
        await real.add_user(user.name, user.role, user.display_name, user.org, "unused")
    store = BrokenStore(real)
    audit = AuditLog(store)  # type: ignore[arg-type]
    await audit.start()
    core = Core(config(data, **overrides), store, audit)  # type: ignore[arg-type]
    return Harness(core=core, audit=audit, store=store, data=data)


async def close(h: Harness) -> None:
    await h.core.shutdown()
    for task in h.tasks:
        task.cancel()
    await asyncio.gather(*h.tasks, return_exceptions=True)
    h.store.broken = False
    await h.audit.close()
    await h.store.close()
