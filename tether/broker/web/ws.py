"""WebSocket endpoints: the client's control channel, both relay ends, live updates.

Compression is off everywhere (it costs CPU on floods and, beside secrets,
would let attacker-chosen text leak them by size). Each endpoint has the size
limit of its channel kind. A malformed frame closes that one connection with
a reason; it never reaches another session.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from aiohttp import WSMsgType, web

from ...protocol import messages as m
from ...protocol.errors import AuthError, Forbidden, ProtocolError, TetherError
from ..auth.logins import COOKIE, token_hash
from ..auth.rules import may_act_on
from ..core.agents import Agent
from ..keys import HUB, LOGINS
from .security import check_origin, client_ip, current_user

log = logging.getLogger("tether.ws")
FIRST_FRAME_TIMEOUT = 10.0
#: per relay connection: deep enough to keep reading while the last batch is sent
RELAY_WRITE_BUFFER = 1024 * 1024


async def _close(ws: web.WebSocketResponse, exc: TetherError, ctx: dict[str, Any]) -> None:
    log.info("closing websocket: %s", exc.message, extra=ctx)
    if not ws.closed:
        await ws.close(code=exc.close_code, message=exc.message.encode()[:120])


async def _first_frame(ws: web.WebSocketResponse, limit: int = 4096) -> dict[str, Any]:
    try:
        msg = await asyncio.wait_for(ws.receive(), FIRST_FRAME_TIMEOUT)
    except TimeoutError as exc:
        raise AuthError("no credentials presented") from exc
    if msg.type != WSMsgType.TEXT:
        raise ProtocolError("the first frame must be JSON text")
    return m.loads_object(msg.data, limit)


async def agent_control(request: web.Request) -> web.StreamResponse:
    """``/ws/agent``: one customer client. Browsers are refused outright."""
    if "Origin" in request.headers:
        raise web.HTTPForbidden(text="browsers may not open the client channel")
    hub = request.app[HUB]
    ip = client_ip(request)
    ws = web.WebSocketResponse(max_msg_size=m.CONTROL_MAX_BYTES, compress=False, heartbeat=20)
    await ws.prepare(request)
    lock = asyncio.Lock()

    async def send(msg: m.Message) -> None:
        async with lock:
            await ws.send_str(msg.to_json())

    async def close(code: int, reason: str) -> None:
        await ws.close(code=code, message=reason.encode())

    agent = Agent(send=send, close=close, ip=ip)
    reason = "the client disconnected"
    try:
        first = await _first_frame(ws, m.CONTROL_MAX_BYTES)
        hello = m.parse(json.dumps(first, ensure_ascii=False), frozenset({m.Hello, m.Resume}))
        if isinstance(hello, m.Resume):
            await hub.agent_resume(agent, hello)
        else:
            assert isinstance(hello, m.Hello)
            await hub.agent_hello(agent, hello)
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await hub.dispatch(agent, m.parse(msg.data, m.CLIENT_MESSAGES))
            elif msg.type == WSMsgType.BINARY:
                raise ProtocolError("binary frames are not allowed on the control channel")
            else:
                break
        if ws.close_code == 1009:
            reason = "the client sent a message over the size limit"
    except TetherError as exc:
        reason = f"closed by the broker: {exc.message}"
        await _close(ws, exc, {"peer": ip})
    finally:
        await hub.agent_gone(agent, reason)
    return ws


async def relay_agent(request: web.Request) -> web.StreamResponse:
    """``/ws/relay/agent``: the client's end of one channel; secret in the first frame."""
    if "Origin" in request.headers:
        raise web.HTTPForbidden(text="browsers may not open this endpoint")
    hub = request.app[HUB]
    ip = client_ip(request)
    ws = web.WebSocketResponse(max_msg_size=m.TERMINAL_MAX_BYTES, compress=False, heartbeat=20,
                               writer_limit=RELAY_WRITE_BUFFER)
    await ws.prepare(request)
    try:
        first = await _first_frame(ws)
        channel = hub.take_secret(first.get("secret"), "agent")
        await hub.relays[channel].serve_agent(ws, ip)
    except TetherError as exc:
        await _close(ws, exc, {"peer": ip})
    return ws


async def _console_opened(request: web.Request, user: dict[str, Any],
                          ws: web.WebSocketResponse) -> bool:
    """Register a console socket with its login, then make sure the login is still
    valid (a revocation during the handshake would otherwise miss this socket)."""
    login = token_hash(request.cookies.get(COOKIE, ""))
    request.app[HUB].consoles.opened(user["id"], ws, login)
    if await request.app[LOGINS].valid(login):
        return True
    request.app[HUB].consoles.closed(user["id"], ws)
    await ws.close(code=4401, message=b"sign in first")
    return False


async def relay_viewer(request: web.Request) -> web.StreamResponse:
    """``/ws/relay/viewer``: the technician's end; cookie and Origin checked first."""
    ip = client_ip(request)
    user = await current_user(request)
    if user is None:
        raise web.HTTPUnauthorized(text="sign in first")
    check_origin(request, required=True)
    hub = request.app[HUB]
    ws = web.WebSocketResponse(max_msg_size=m.TERMINAL_MAX_BYTES, compress=False, heartbeat=20,
                               writer_limit=RELAY_WRITE_BUFFER)
    await ws.prepare(request)
    if not await _console_opened(request, user, ws):
        return ws
    try:
        first = await _first_frame(ws)
        channel = hub.take_secret(first.get("secret"), "viewer")
        if not may_act_on(user, channel.session.technician["id"]):
            raise Forbidden("not your session")
        await hub.relays[channel].serve_viewer(ws, user, ip)
    except TetherError as exc:
        await _close(ws, exc, {"peer": ip, "user": user["name"]})
    finally:
        hub.consoles.closed(user["id"], ws)
    return ws


async def live(request: web.Request) -> web.StreamResponse:
    """``/ws/live``: pushes session state to the console as it changes."""
    user = await current_user(request)
    if user is None:
        raise web.HTTPUnauthorized(text="sign in first")
    check_origin(request, required=True)
    hub = request.app[HUB]
    session_id = request.query.get("session")
    ws = web.WebSocketResponse(max_msg_size=4096, compress=False, heartbeat=20)
    await ws.prepare(request)
    if not await _console_opened(request, user, ws):
        return ws
    queue = hub.subscribe(user, session_id)
    try:
        if session_id and session_id in hub.sessions:
            session = hub.sessions[session_id]
            if may_act_on(user, session.technician["id"]):
                await ws.send_str(json.dumps({"type": "session", "session": session.to_dict()}))
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
        hub.unsubscribe(queue)
        hub.consoles.closed(user["id"], ws)
    return ws
