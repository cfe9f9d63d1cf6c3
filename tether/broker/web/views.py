"""Console pages (aiohttp-jinja2) and the JSON API behind them.

Handlers check who is asking, call the hub, and render; nothing else. Every
string that came from a customer's machine is rendered by Jinja2 with
autoescape, and by the page scripts with ``textContent`` only.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from ...protocol.errors import AuthError, NotFound, ProtocolError, RateLimited
from ..auth.devices import COOKIE as DEVICE_COOKIE
from ..auth.devices import MAX_AGE as DEVICE_MAX_AGE
from ..auth.logins import COOKIE, PRE_COOKIE, token_hash
from ..auth.rules import User, only_own
from ..core.sessions import Session, row_to_dict
from ..keys import ACCOUNTS, AUDIT, CONSOLES, CORE, LOGINS, STORE
from .security import check_csrf, client_ip, current_user, require_user

log = logging.getLogger("tether.web")
routes = web.RouteTableDef()


def _cookie(response: web.StreamResponse, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(name, value, path="/", secure=True, httponly=True, samesite="Strict",
                        max_age=max_age)


def _render(request: web.Request, template: str, ctx: dict[str, Any], *,
            csrf_token: str, status: int = 200) -> web.Response:
    ctx = {"csrf_token": csrf_token, "user": None, "title": "Tether", **ctx}
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)


def _csrf_for(request: web.Request) -> str:
    return request.app[LOGINS].csrf(request.cookies.get(COOKIE, ""))


def render_page(request: web.Request, template: str, ctx: dict[str, Any],
                status: int = 200) -> web.Response:
    """A page for a signed-in user (its forms carry the user's CSRF token)."""
    return _render(request, template, ctx, csrf_token=_csrf_for(request), status=status)


async def read_form(request: web.Request) -> dict[str, str]:
    """A small urlencoded form (what our pages send); anything else is a clear 400."""
    if request.content_length and request.content_length > 16384:
        raise ProtocolError("form too large")
    if request.content_type != "application/x-www-form-urlencoded":
        raise ProtocolError("expected a form")
    try:
        data = await request.post()
    except (ValueError, LookupError) as exc:  # bad charset or encoding
        raise ProtocolError("malformed form") from exc
    return {k: v for k, v in data.items() if isinstance(v, str)}


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_length and request.content_length > 16384:
        raise ProtocolError("body too large")
    try:
        body = await request.json()
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("malformed JSON") from exc
    if not isinstance(body, dict):
        raise ProtocolError("expected a JSON object")
    return body


# --- sign-in ---------------------------------------------------------------


@routes.get("/")
async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/dashboard" if await current_user(request) else "/login")


def _login_page(request: web.Request, error: str | None = None,
                status: int = 200) -> web.Response:
    pre = request.cookies.get(PRE_COOKIE) or secrets.token_urlsafe(16)
    response = _render(request, "login.html", {"error": error, "title": "Sign in"},
                       csrf_token=request.app[LOGINS].csrf(pre), status=status)
    _cookie(response, PRE_COOKIE, pre, None)
    if COOKIE in request.cookies:  # an expired or revoked login: forget it
        response.del_cookie(COOKIE, path="/", secure=True, samesite="Strict")
    return response


@routes.get("/login")
async def login_page(request: web.Request) -> web.StreamResponse:
    if await current_user(request):
        raise web.HTTPSeeOther("/dashboard")
    return _login_page(request)


@routes.post("/login")
async def login(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    await check_csrf(request, form.get("csrf"), PRE_COOKIE)
    ip = client_ip(request)
    try:
        signed_in = await request.app[ACCOUNTS].sign_in(
            form.get("username", "")[:64], form.get("password", "")[:1024],
            form.get("otp", "")[:16], ip, request.cookies.get(DEVICE_COOKIE))
    except RateLimited as exc:
        response = _login_page(request, exc.message, 429)
        response.headers["Retry-After"] = str(max(1, round(exc.retry_after)))
        return response
    except AuthError as exc:
        log.info("sign-in failed", extra={"peer": ip})
        return _login_page(request, exc.message, 401)
    row = signed_in.row
    await _end_replaced_login(request)
    token = await request.app[LOGINS].create(row["id"])
    await request.app[AUDIT].append("user.signed_in", actor=row["name"], ip=ip,
                                    user_agent=request.headers.get("User-Agent", "")[:256])
    response = web.HTTPSeeOther("/dashboard")
    _cookie(response, COOKIE, token, None)
    _cookie(response, DEVICE_COOKIE, signed_in.device_cookie, DEVICE_MAX_AGE)
    response.del_cookie(PRE_COOKIE, path="/", secure=True, samesite="Strict")
    raise response


async def _end_replaced_login(request: web.Request) -> None:
    """A new sign-in in a browser replaces the login whose cookie it still holds: that
    login ends here, with its console sockets, rather than living on unseen. Logins
    in other browsers stay (a technician may work in two browsers at once)."""
    old = request.cookies.get(COOKIE)
    if not old:
        return
    user = await current_user(request)
    await request.app[LOGINS].end(old)
    if user:
        await request.app[CONSOLES].close(user.id, token_hash(old), "signed in again")


@routes.post("/logout")
async def logout(request: web.Request) -> web.StreamResponse:
    form = await read_form(request)
    await check_csrf(request, form.get("csrf"))
    user = await current_user(request)
    token = request.cookies.get(COOKIE)
    if token:
        await request.app[LOGINS].end(token)
        if user:  # the console sockets of this login close with it
            await request.app[CONSOLES].close(user.id, token_hash(token), "signed out")
    if user:
        await request.app[AUDIT].append("user.signed_out", actor=user.name,
                                        ip=client_ip(request))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(COOKIE, path="/", secure=True, samesite="Strict")
    raise response


# --- dashboard and sessions ------------------------------------------------


async def _session_list(request: web.Request, user: User) -> list[dict[str, Any]]:
    mine = only_own(user)
    live = [s.to_dict() for s in request.app[CORE].sessions_for(user)]
    seen = {s["id"] for s in live}
    store = request.app[STORE]
    stored = []
    for row in await store.sessions_for(mine):
        if row["id"] in seen:
            continue
        tech = user.public() if row["technician_id"] == user.id else (
            await store.user_by_id(row["technician_id"]) or {"name": "?", "display_name": "?",
                                                             "org": ""})
        stored.append(row_to_dict(row, tech))
    return sorted(live + stored, key=lambda s: s["created"], reverse=True)


async def _dashboard(request: web.Request, user: User, error: str | None = None,
                     status: int = 200) -> web.Response:
    return render_page(request, "dashboard.html",
                       {"user": user, "sessions": await _session_list(request, user),
                        "error": error, "title": "Sessions"}, status)


@routes.get("/dashboard")
async def dashboard(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    if user.role == "auditor":  # auditors work in the read-only Audit section
        raise web.HTTPSeeOther("/audit")
    return await _dashboard(request, user)


@routes.post("/sessions")
async def redeem(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    form = await read_form(request)
    await check_csrf(request, form.get("csrf"))
    try:
        session = await request.app[CORE].redeem(user, form.get("code", ""),
                                                  client_ip(request))
    except (AuthError, RateLimited) as exc:
        response = await _dashboard(request, user, exc.message, exc.http_status)
        if isinstance(exc, RateLimited):
            response.headers["Retry-After"] = str(int(exc.retry_after))
        return response
    raise web.HTTPSeeOther(f"/sessions/{session.id}")


async def _session_dict(request: web.Request, user: User,
                        session_id: str) -> dict[str, Any]:
    try:
        return request.app[CORE].session_for(user, session_id).to_dict()
    except NotFound:
        for s in await _session_list(request, user):
            if s["id"] == session_id:
                return s
        raise


@routes.get("/sessions/{id}")
async def session_page(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    session = await _session_dict(request, user, request.match_info["id"])
    return render_page(request, "session.html",
                       {"user": user, "session": session, "title": "Session"})


# --- JSON API ----------------------------------------------------------------


@routes.get("/api/sessions")
async def api_sessions(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    return web.json_response({"sessions": await _session_list(request, user)})


@routes.get("/api/sessions/{id}")
async def api_session(request: web.Request) -> web.StreamResponse:
    user = await require_user(request)
    return web.json_response(await _session_dict(request, user, request.match_info["id"]))


async def _acting(request: web.Request) -> tuple[User, Session]:
    """A technician's state-changing API call on one of their live sessions."""
    user = User.of(await require_user(request, "technician", "admin"))
    await check_csrf(request, request.headers.get("X-CSRF-Token"))
    return user, request.app[CORE].session_for(user, request.match_info["id"])


@routes.post("/api/sessions/{id}/channels")
async def api_open_channel(request: web.Request) -> web.StreamResponse:
    user, session = await _acting(request)
    body = await _json(request)
    cols, rows = body.get("cols", 80), body.get("rows", 24)
    if not isinstance(cols, int) or not isinstance(rows, int):
        raise ProtocolError("cols and rows must be integers")
    channel = await request.app[CORE].request_channel(user, session, str(body.get("kind", "")),
                                                      cols, rows, client_ip(request))
    return web.json_response({"channel": channel.to_dict()}, status=202)


@routes.post("/api/sessions/{id}/channels/{cid}/attach")
async def api_attach(request: web.Request) -> web.StreamResponse:
    user, session = await _acting(request)
    secret = request.app[CORE].viewer_secret(user, session, request.match_info["cid"])
    return web.json_response({"secret": secret})


@routes.post("/api/sessions/{id}/end")
async def api_end(request: web.Request) -> web.StreamResponse:
    user, session = await _acting(request)
    await request.app[CORE].end_session(user, session, client_ip(request))
    return web.json_response(session.to_dict())
