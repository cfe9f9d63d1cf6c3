"""Pairs the two ends of a channel and pumps frames between them.

Each end is its own WebSocket (one channel per TCP connection), and each
handler awaits the send to the other end before it reads again, so a slow
viewer slows only its own shell (back-pressure reaches the customer's PTY)
and never another session. Every byte is recorded before it is forwarded;
if the recording cannot be written the channel is closed (fail closed).

Terminal frames: binary = bytes; text = small JSON controls
(viewer → agent: ``resize``; agent → viewer: ``echo``, ``exit``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from aiohttp import WSMsgType, web

from ...protocol.errors import AuditUnavailable, ProtocolError
from ...protocol.messages import loads_object
from ..core.sessions import Channel
from ..recording.cast import CastWriter

if TYPE_CHECKING:
    from ..core.hub import Hub

log = logging.getLogger("tether.relay")


class Relay:
    def __init__(self, hub: Hub, channel: Channel, cast: CastWriter, path: str) -> None:
        self.hub = hub
        self.channel = channel
        self.cast = cast
        self.path = path  # relative to the data directory
        self.rec_id = 0
        self.viewer_user_id: int | None = None
        self.agent: web.WebSocketResponse | None = None
        self.viewer: web.WebSocketResponse | None = None
        self.echo = True
        self.scrollback: deque[bytes] = deque()
        self._scrollback_size = 0
        self.exit_code: int | None = None
        self._close_frame = (1000, b"")
        self._opening = False

    def _ctx(self) -> dict[str, Any]:
        return {"session": self.channel.session.id, "chan": self.channel.id}

    def record(self, fn: Any, *args: Any) -> None:
        """Call a CastWriter method; a write failure becomes AuditUnavailable (fail closed)."""
        try:
            fn(*args)
        except OSError as exc:
            log.error("recording write failed: %s", exc.__class__.__name__, extra=self._ctx())
            raise AuditUnavailable("recording failed: channel closed") from exc

    # --- agent end ---------------------------------------------------------

    async def serve_agent(self, ws: web.WebSocketResponse, ip: str) -> None:
        hub, channel = self.hub, self.channel
        try:
            await hub.audit.append("channel.agent_connected", actor="client", ip=ip,
                                   session_id=channel.session.id, channel=channel.id)
            self.agent = ws
            await self._maybe_open()
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await self._output(msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await self._agent_control(msg.data)
                else:
                    break
        except AuditUnavailable as exc:
            await hub.close_channel(channel, "broker", exc.message, failed=True)
        except ProtocolError as exc:
            await hub.close_channel(channel, "broker", f"client error: {exc.message}")
        finally:
            self.agent = None
            await self._close_own(ws)
            if channel.live:
                reason = ("the shell exited" if self.exit_code is not None
                          else "the customer's client closed the channel")
                await hub.close_channel(channel, "client", reason)

    async def _output(self, data: bytes) -> None:
        self.record(self.cast.output, data)
        self.channel.session.last_activity = time.monotonic()
        # recent output for a viewer that (re)attaches; chunks, not one buffer, so a
        # flood does not move the whole scrollback in memory on every message
        self.scrollback.append(data)
        self._scrollback_size += len(data)
        limit = self.hub.config.scrollback_bytes
        while self._scrollback_size - len(self.scrollback[0]) >= limit:
            self._scrollback_size -= len(self.scrollback.popleft())
        viewer = self.viewer if self.channel.state == "open" else None
        if viewer is not None:
            try:
                await viewer.send_bytes(data)
            except (ConnectionError, RuntimeError):
                pass  # the viewer's own handler notices and detaches

    async def _agent_control(self, text: str) -> None:
        obj = loads_object(text, 4096)
        kind = obj.get("type")
        if kind == "echo" and isinstance(obj.get("on"), bool):
            self.echo = obj["on"]
            self.record(self.cast.marker, "echo on" if self.echo else "echo off (input hidden)")
            forward: dict[str, Any] = {"type": "echo", "on": self.echo}
        elif kind == "exit" and isinstance(obj.get("code"), int):
            self.exit_code = obj["code"]
            forward = {"type": "exit", "code": self.exit_code}
        else:
            raise ProtocolError("unknown terminal control")
        if self.viewer is not None:
            try:
                await self.viewer.send_str(json.dumps(forward))
            except (ConnectionError, RuntimeError):
                pass

    # --- viewer end --------------------------------------------------------

    async def serve_viewer(self, ws: web.WebSocketResponse, user: dict[str, Any],
                           ip: str) -> None:
        hub, channel = self.hub, self.channel
        if self.viewer is not None:
            await ws.close(code=4409, message=b"another viewer is attached")
            return
        self.viewer = ws  # reserved before any await: a second viewer gets 4409
        self.viewer_user_id = user["id"]
        try:
            await hub.audit.append("channel.viewer_attached", actor=user["name"], ip=ip,
                                   session_id=channel.session.id, channel=channel.id)
            self.record(self.cast.marker, f"viewer attached: {user['display_name']}")
            await self._maybe_open()
            if self.scrollback:
                await ws.send_bytes(b"".join(self.scrollback))
            await ws.send_str(json.dumps({"type": "echo", "on": self.echo}))
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await self._input(ws, msg.data)
                elif msg.type == WSMsgType.TEXT:
                    await self._resize(ws, msg.data)
                else:
                    break
        except AuditUnavailable as exc:
            await hub.close_channel(channel, "broker", exc.message, failed=True)
        except ProtocolError as exc:
            await ws.close(code=exc.close_code, message=exc.message.encode())
        except ConnectionError:
            pass  # the viewer went away mid-send: a detach like any other
        finally:
            if self.viewer is ws:
                self.viewer = None
                self.viewer_user_id = None
            await self._close_own(ws)
            if channel.state == "open" and self.viewer is None:
                channel.fire("detach")
                hub.viewer_detached(channel)
                try:
                    self.record(self.cast.marker, "viewer detached")
                    await hub.audit.append("channel.viewer_detached", actor=user["name"], ip=ip,
                                           session_id=channel.session.id, channel=channel.id)
                except AuditUnavailable as exc:
                    await hub.close_channel(channel, "broker", exc.message, failed=True)
                hub.publish(channel.session)

    def _live(self, ws: web.WebSocketResponse) -> bool:
        """Only the attached viewer of an open channel reaches the PTY."""
        return ws is self.viewer and self.channel.state == "open" and self.agent is not None

    async def _input(self, ws: web.WebSocketResponse, data: bytes) -> None:
        agent = self.agent
        if agent is None or not self._live(ws):
            return
        if self.echo:  # no input recorded while the customer's terminal hides it
            self.record(self.cast.input, data)
        self.channel.session.last_activity = time.monotonic()
        await agent.send_bytes(data)

    async def _resize(self, ws: web.WebSocketResponse, text: str) -> None:
        obj = loads_object(text, 4096)
        cols, rows = obj.get("cols"), obj.get("rows")
        if (obj.get("type") != "resize" or not isinstance(cols, int)
                or not isinstance(rows, int) or not (1 <= cols <= 1000 and 1 <= rows <= 1000)):
            raise ProtocolError("bad terminal control")
        if not self._live(ws):
            return
        self.record(self.cast.resize, cols, rows)
        if self.agent is not None:
            await self.agent.send_str(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    # --- both --------------------------------------------------------------

    async def _maybe_open(self) -> None:
        channel = self.channel
        if (self.agent is None or self.viewer is None or self._opening
                or channel.state not in ("pairing", "detached")):
            return
        self._opening = True  # the other end may get here during the await below
        try:
            if channel.state == "pairing":  # audited before a byte flows between the ends
                await self.hub.audit.append("channel.opened", actor="broker",
                                            session_id=channel.session.id, channel=channel.id)
            if channel.state in ("pairing", "detached"):  # it may have closed meanwhile
                channel.fire("paired")
                channel.deadline = None
                self.hub.publish(channel.session)
        finally:
            self._opening = False

    async def _close_own(self, ws: web.WebSocketResponse) -> None:
        """Close from the handler's own task, with the code :meth:`shutdown` chose.

        When another task calls ``close()`` while the handler is reading,
        aiohttp wakes the reader first and sends the close frame after; if the
        handler returned in between, the peer would see 1006 and no reason.
        """
        if not ws.closed:
            code, message = self._close_frame
            try:
                await asyncio.wait_for(ws.close(code=code, message=message), 2)
            except (TimeoutError, ConnectionError, RuntimeError):
                pass

    async def shutdown(self, reason: str, *, failed: bool = False) -> None:
        code = 1011 if failed else 1000
        self._close_frame = (code, reason.encode()[:120])
        for ws in (self.viewer, self.agent):
            if ws is None or ws.closed:
                continue
            try:
                if ws is self.viewer:
                    await asyncio.wait_for(
                        ws.send_str(json.dumps({"type": "closed", "reason": reason})), 2)
                await asyncio.wait_for(ws.close(code=code, message=reason.encode()[:120]), 2)
            except (TimeoutError, ConnectionError, RuntimeError):
                pass
