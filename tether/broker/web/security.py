"""Request-level security: who is asking, from where, and the response headers.

* The client address is the TCP peer. ``X-Forwarded-For`` is ignored: trusting
  it would let anyone pick their own address and walk around the per-IP limits.
* Browser requests that change state must come from an allowed Origin and
  carry the CSRF token bound to their cookie.
* Every response gets a CSP without inline script, HSTS, nosniff, no framing
  and no referrer, and everything but the public static files is ``no-store``:
  the console's pages, API answers and exports name customers' machines, users
  and addresses, and must not stay in the browser's disk cache after sign-out.
  The headers are added as the response head is sent (``on_response_prepare``),
  so streamed responses, which their handler sends before any middleware could
  see them, get them too. Errors reach the peer as their own message, never a
  trace.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from ...protocol.errors import AuthError, Forbidden, TetherError
from ..auth.logins import COOKIE
from ..auth.rules import User
from ..keys import AUDIT, LOGINS, ORIGINS

log = logging.getLogger("tether.web")
_USER = web.RequestKey("user", object)

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "Strict-Transport-Security": "max-age=31536000",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer makes Chromium send Origin: null
    "Cross-Origin-Opener-Policy": "same-origin",
}
#: the public assets (scripts, styles, icons): the only responses a browser may cache
STATIC = "/static/"


def client_ip(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[0]) if peer else "unknown"


async def current_user(request: web.Request) -> User | None:
    """The signed-in user of this request, as the typed record every handler uses."""
    if _USER in request:
        return request[_USER]  # type: ignore[return-value]
    row = await request.app[LOGINS].lookup(request.cookies.get(COOKIE))
    user = User.of(row) if row is not None else None
    request[_USER] = user
    return user


async def require_user(request: web.Request, *roles: str) -> User:
    user = await current_user(request)
    if user is None:
        raise AuthError("sign in first")
    if roles and user.role not in roles:
        raise Forbidden("your role does not allow this")
    return user


def check_origin(request: web.Request, *, required: bool) -> None:
    origin = request.headers.get("Origin")
    if origin is None and not required:
        return
    if origin not in request.app[ORIGINS]:
        log.warning("request from a foreign origin refused",
                    extra={"peer": client_ip(request), "path": request.path})
        raise Forbidden("cross-origin request refused")


async def check_csrf(request: web.Request, presented: str | None,
                     cookie: str = COOKIE) -> None:
    """Same-origin, and a CSRF token bound to ``cookie`` (the login cookie, or the
    pre-login cookie for the sign-in form, so a stale login cookie cannot block it)."""
    check_origin(request, required=False)
    token = request.cookies.get(cookie) or ""
    if not token or not request.app[LOGINS].check_csrf(token, presented):
        raise Forbidden("missing or stale form token: reload the page")


def _wants_json(request: web.Request) -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/ws/")


async def _audit_denied(request: web.Request, exc: TetherError) -> None:
    """A signed-in user refused by role, Origin or CSRF check leaves an event."""
    user = request.get(_USER)
    if not isinstance(user, User):
        return
    try:
        await request.app[AUDIT].append("access.denied", actor=user.name,
                                        ip=client_ip(request), method=request.method,
                                        path=request.path[:200], reason=exc.message)
    except TetherError:
        log.error("could not audit a refused request", extra={"user": user.name})


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: runs for every response as its head is sent (pages,
    errors, files, WebSocket upgrades and streamed exports alike)."""
    for key, value in HEADERS.items():
        response.headers.setdefault(key, value)  # a page may have its own CSP
    if not request.path.startswith(STATIC):
        response.headers["Cache-Control"] = "no-store"


@web.middleware
async def translate_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        response = await handler(request)
    except TetherError as exc:
        if isinstance(exc, Forbidden):
            await _audit_denied(request, exc)
        if isinstance(exc, AuthError) and not _wants_json(request) and exc.http_status == 401:
            response = web.HTTPSeeOther("/login")
        else:
            response = web.Response(
                status=exc.http_status,
                content_type="application/json" if _wants_json(request) else "text/plain",
                text=json.dumps({"error": exc.message}) if _wants_json(request) else exc.message,
            )
            if exc.http_status == 429:
                response.headers["Retry-After"] = str(int(getattr(exc, "retry_after", 60)))
    except web.HTTPException as exc:
        response = exc
    except Exception:
        log.exception("unhandled error", extra={"path": request.path, "method": request.method})
        response = web.Response(status=500, text="internal error")
    return response
