"""WebSocket endpoints: the client's control channel, both relay ends, live updates.

Thin adapters: each turns an aiohttp WebSocket into what the core takes (an
:class:`~..core.Agent` for a control connection, an
:class:`~..channels.pump.End` for a relay end) and calls the core's API.

Compression is off everywhere (it costs CPU on floods and, beside secrets,
would let attacker-chosen text leak them by size). Each endpoint has the size
limit of its channel kind. A malformed frame closes that one connection with
a reason; it never reaches another session. An unexpected error closes with
a generic 1011 and is logged in full here.

Control messages are rate-limited per connection (a token bucket: a burst,
then ``control_rate`` a second; a real client sends a handful per session), so
a flood of heartbeats or late decisions is closed with a reason instead of
taking the event loop from other sessions. Relay data is never rate-limited,
only back-pressured (the pump reads no faster than the other end takes).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import WSMsgType, web

from ...protocol import messages as m
from ...protocol.channels import MAX_FRAME
from ...protocol.errors import (
    AuthError,
    Close,
    Forbidden,
    InternalError,
    ProtocolError,
    RateLimited,
    TetherError,
)
from ..auth.logins import COOKIE, token_hash
from ..auth.rules import User
from ..core import Agent, Gone
from ..keys import CONFIG, CONSOLES, CORE, LOGINS
from ..limits import TokenBucket
from .security import check_origin, client_ip, current_user

log = logging.getLogger("tether.ws")
FIRST_FRAME_TIMEOUT = 10.0
#: per relay connection: deep enough to keep reading while the last batch is sent
RELAY_WRITE_BUFFER = 1024 * 1024
#: how long a closing control socket waits for the peer's close frame (a flooder's
#: frames are read and dropped meanwhile, so this is short)
CONTROL_CLOSE_TIMEOUT = 2.0
_GONE = (ConnectionError, RuntimeError)  # aiohttp: "Cannot write to closing transport"


async def _close(ws: web.WebSocketResponse, exc: TetherError, ctx: dict[str, Any]) -> None:
    log.info("closing websocket: %s", exc.message, extra=ctx)
    if not ws.closed:
        await ws.close(code=exc.close_code, message=exc.message.encode()[:120])


async def _unexpected(ws: web.WebSocketResponse, ctx: dict[str, Any]) -> None:
    """Log the whole error here; the peer learns only that something went wrong."""
    log.exception("unexpected error on a websocket", extra=ctx)
    await _close(ws, InternalError(), ctx)


async def _first_frame(ws: web.WebSocketResponse, limit: int = 4096) -> dict[str, Any]:
    try:
        msg = await asyncio.wait_for(ws.receive(), FIRST_FRAME_TIMEOUT)
    except TimeoutError as exc:
        raise AuthError("no credentials presented") from exc
    if msg.type != WSMsgType.TEXT:
        raise ProtocolError("the first frame must be JSON text")
    return m.loads_object(msg.data, limit)


def _refuse_browsers(request: web.Request) -> None:
    # Browsers always send Origin; the client never does.
    if "Origin" in request.headers:
        raise Forbidden("browsers may not open this endpoint")


async def agent_control(request: web.Request) -> web.StreamResponse:
    """``/ws/agent``: one customer client's control channel."""
    _refuse_browsers(request)
    core = request.app[CORE]
    config = request.app[CONFIG]
    ip = client_ip(request)
    ws = web.WebSocketResponse(max_msg_size=m.CONTROL_MAX_BYTES, compress=False, heartbeat=20,
                               timeout=CONTROL_CLOSE_TIMEOUT)
    await ws.prepare(request)
    lock = asyncio.Lock()

    async def send(msg: m.Message) -> None:
        async with lock:
            try:
                await ws.send_str(msg.to_json())
            except _GONE as exc:
                raise Gone("the client's connection is closing") from exc

    async def close(code: int, reason: str) -> None:
        await ws.close(code=code, message=reason.encode()[:120])

    agent = Agent(send=send, close=close, ip=ip)
    reason = "the client disconnected"
    bucket = TokenBucket(config.control_burst, config.control_rate)
    try:
        first = await _first_frame(ws, m.CONTROL_MAX_BYTES)
        hello = m.parse(json.dumps(first, ensure_ascii=False), frozenset({m.Hello, m.Resume}))
        assert isinstance(hello, m.Hello | m.Resume)
        await core.client_hello(agent, hello)
        async for msg in ws:
            if bucket.take() > 0:
                raise RateLimited(60.0, "too many control messages")
            if msg.type == WSMsgType.TEXT:
                await core.client_message(agent, m.parse(msg.data, m.CLIENT_MESSAGES))
            elif msg.type == WSMsgType.BINARY:
                raise ProtocolError("binary frames are not allowed on the control channel")
            else:
                break
        if ws.close_code == Close.TOO_BIG:
            reason = "the client sent a message over the size limit"
    except TetherError as exc:
        reason = f"closed by the broker: {exc.message}"
        await _close(ws, exc, {"peer": ip})
    except Gone:
        reason = "the client disconnected"
    except Exception:
        reason = "closed by the broker: internal error"
        await _unexpected(ws, {"peer": ip})
    finally:
        await core.client_gone(agent, reason)
    return ws


class WebSocketEnd:
    """An aiohttp WebSocket as one end of a channel (see ``channels/pump.py``)."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self._close_frame: tuple[int, str] = (Close.NORMAL, "")

    async def frames(self) -> AsyncIterator[bytes | str]:
        async for msg in self.ws:
            if msg.type == WSMsgType.BINARY:
                yield msg.data
            elif msg.type == WSMsgType.TEXT:
                yield msg.data
            else:
                return

    async def send(self, frame: bytes | str) -> None:
        try:
            if isinstance(frame, bytes):
                await self.ws.send_bytes(frame)
            else:
                await self.ws.send_str(frame)
        except _GONE as exc:
            raise Gone("the end is closing") from exc

    async def close(self, code: int, reason: str) -> None:
        self._close_frame = (code, reason)
        await self.ws.close(code=code, message=reason.encode()[:120])

    async def finish(self) -> None:
        """Close from the handler's own task, with the code :meth:`close` chose.

        When another task calls ``close()`` while the handler is reading,
        aiohttp wakes the reader first and sends the close frame after; if the
        handler returned in between, the peer would see 1006 and no reason.
        """
        if not self.ws.closed:
            code, reason = self._close_frame
            try:
                await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()[:120]),
                                       2)
            except (TimeoutError, *_GONE):
                pass


def _relay_socket() -> web.WebSocketResponse:
    return web.WebSocketResponse(max_msg_size=MAX_FRAME, compress=False, heartbeat=20,
                                 writer_limit=RELAY_WRITE_BUFFER)


async def relay_agent(request: web.Request) -> web.StreamResponse:
    """``/ws/relay/agent``: the client's end of one channel; secret in the first frame."""
    _refuse_browsers(request)
    ip = client_ip(request)
    ws = _relay_socket()
    await ws.prepare(request)
    try:
        first = await _first_frame(ws)
        await request.app[CORE].serve_agent_end(first.get("secret"), WebSocketEnd(ws), ip)
    except TetherError as exc:
        await _close(ws, exc, {"peer": ip})
    except Exception:
        await _unexpected(ws, {"peer": ip})
    return ws


async def _console_opened(request: web.Request, user: User,
                          ws: web.WebSocketResponse) -> bool:
    """Register a console socket with its login, then make sure the login is still
    valid (a revocation during the handshake would otherwise miss this socket)."""
    login = token_hash(request.cookies.get(COOKIE, ""))
    request.app[CONSOLES].opened(user.id, ws, login)
    if await request.app[LOGINS].valid(login):
        return True
    request.app[CONSOLES].closed(user.id, ws)
    await ws.close(code=Close.AUTH, message=b"sign in first")
    return False


async def _console_user(request: web.Request) -> User:
    user = await current_user(request)
    if user is None:
        raise AuthError("sign in first")
    check_origin(request, required=True)
    return user


async def relay_viewer(request: web.Request) -> web.StreamResponse:
    """``/ws/relay/viewer``: the technician's end; cookie and Origin checked first."""
    ip = client_ip(request)
    user = await _console_user(request)
    ws = _relay_socket()
    await ws.prepare(request)
    if not await _console_opened(request, user, ws):
        return ws
    ctx = {"peer": ip, "user": user.name}
    try:
        first = await _first_frame(ws)
        await request.app[CORE].serve_viewer_end(first.get("secret"), WebSocketEnd(ws),
                                                 user, ip)
    except TetherError as exc:
        await _close(ws, exc, ctx)
    except Exception:
        await _unexpected(ws, ctx)
    finally:
        request.app[CONSOLES].closed(user.id, ws)
    return ws


async def live(request: web.Request) -> web.StreamResponse:
    """``/ws/live``: pushes session state to the console as it changes."""
    user = await _console_user(request)
    core = request.app[CORE]
    session_id = request.query.get("session")
    ws = web.WebSocketResponse(max_msg_size=4096, compress=False, heartbeat=20)
    await ws.prepare(request)
    if not await _console_opened(request, user, ws):
        return ws
    queue = core.subscribe(user, session_id)
    try:
        if session_id:
            try:
                session = core.session_for(user, session_id)
                await ws.send_str(json.dumps({"type": "session", "session": session.to_dict()}))
            except TetherError:
                pass  # not live, or not theirs: updates (if any) follow
        reader = asyncio.ensure_future(ws.receive())
        while not ws.closed:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({reader, getter}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await ws.send_str(json.dumps({"type": "session", "session": getter.result()}))
            else:
                getter.cancel()
            if reader in done:
                if reader.result().type in (WSMsgType.CLOSE, WSMsgType.CLOSING,
                                            WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
                reader = asyncio.ensure_future(ws.receive())
        reader.cancel()
    finally:
        core.unsubscribe(queue)
        request.app[CONSOLES].closed(user.id, ws)
    return ws
