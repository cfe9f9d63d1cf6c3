"""The admin page: the same account changes as ``tether-broker user ...``.

Admins only (anyone else gets 403, audited by the errors middleware). Every
change is audited with the admin's name, then made in the store; the account
watcher (:mod:`.accounts`) sees it like a command-line change and revokes what
the change takes away, so both doors behave the same.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from ...protocol.errors import Conflict, NotFound, ProtocolError
from ...protocol.sanitize import clean_text
from ..audit.actions import ADMIN_USER_ACTIONS
from ..auth import totp
from ..auth.rules import ROLES, User
from ..keys import ACCOUNTS, AUDIT, CORE, PASSWORDS, STORE
from .security import check_csrf, client_ip, require_user
from .views import read_form, render_page

routes = web.RouteTableDef()
NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")


async def _admin_form(request: web.Request) -> tuple[User, dict[str, str]]:
    user = await require_user(request, "admin")
    form = await read_form(request)
    await check_csrf(request, form.get("csrf"))
    return user, form


async def _page(request: web.Request, user: User, *, message: str | None = None,
                new_secret: dict[str, str] | None = None, status: int = 200) -> web.Response:
    accounts = request.app[ACCOUNTS]
    core = request.app[CORE]
    users = [{**u, "delayed": accounts.by_name.retry_after(u["name"]) > 0,
              "codes_blocked": core.code_entry_blocked(u["id"]) > 0}
             for u in await request.app[STORE].users()]
    return render_page(request, "admin.html", {
        "user": user, "title": "Accounts", "users": users, "roles": ROLES,
        "message": message, "new_secret": new_secret}, status)


@routes.get("/admin")
async def admin_page(request: web.Request) -> web.StreamResponse:
    return await _page(request, await require_user(request, "admin"))


@routes.post("/admin/users")
async def add_user(request: web.Request) -> web.StreamResponse:
    admin, form = await _admin_form(request)
    name, role, password = form.get("name", ""), form.get("role", ""), form.get("password", "")
    if not NAME.fullmatch(name):
        raise ProtocolError("user names are 1-64 letters, digits and . _ @ -")
    if role not in ROLES:
        raise ProtocolError("unknown role")
    if len(password) < 8:
        raise ProtocolError("the password must have at least 8 characters")
    store = request.app[STORE]
    if await store.user_by_name(name):
        raise Conflict(f"user {name} already exists")
    seed = totp.new_seed()
    sealed = request.app[ACCOUNTS].seeds.seal(name, seed)
    pw_hash = await request.app[PASSWORDS].hash(password)
    display = clean_text(form.get("display_name") or name, 80)
    await request.app[AUDIT].append("admin.user_added", actor=admin.name,
                                    ip=client_ip(request), target=name, role=role)
    try:
        await store.add_user(name, role, display, clean_text(form.get("org", ""), 80), pw_hash,
                             sealed)
    except Conflict:  # added by someone else in the meantime (the store says so)
        raise Conflict(f"user {name} already exists") from None
    return await _page(request, admin, message=f"Added {role} {name}.",
                       new_secret={"name": name, "seed": seed, "uri": totp.uri(name, seed)})


ACTIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "disable": ("disabled", {"disabled": 1}),
    "enable": ("enabled", {"disabled": 0}),
}


@routes.post("/admin/users/{name}/{action:(disable|enable|role|clear-delays|totp)}")
async def change_user(request: web.Request) -> web.StreamResponse:
    admin, form = await _admin_form(request)
    name, action = request.match_info["name"], request.match_info["action"]
    store = request.app[STORE]
    row = await store.user_by_name(name)
    if row is None:
        raise NotFound("no such user")
    audit = {"actor": admin.name, "ip": client_ip(request), "target": name}
    if action == "clear-delays":
        await request.app[AUDIT].append("admin.delays_cleared", **audit)
        request.app[ACCOUNTS].clear_delays(name)
        request.app[CORE].clear_code_failures(row["id"])
        return await _page(request, admin,
                           message=f"Sign-in delays and code-entry limit cleared for {name}.")
    new_secret = None
    values: dict[str, Any]
    if action == "role":
        role = form.get("role", "")
        if role not in ROLES:
            raise ProtocolError("unknown role")
        if name == admin.name and role != "admin":
            raise Conflict("you cannot take away your own admin role")
        done, values = f"now {role}", {"role": role}
    elif action == "totp":
        seed = totp.new_seed()
        done = "given a new authentication secret"
        values = {"totp_seed": request.app[ACCOUNTS].seeds.seal(name, seed), "totp_step": 0}
        new_secret = {"name": name, "seed": seed, "uri": totp.uri(name, seed)}
    else:
        if name == admin.name and action == "disable":
            raise Conflict("you cannot disable your own account")
        done, values = ACTIONS[action]
    await request.app[AUDIT].append(ADMIN_USER_ACTIONS[action], **audit,
                                    **({"role": values["role"]} if "role" in values else {}))
    if not await store.update_user(name, **values):
        return await _page(request, admin, message=f"Nothing to change for {name}.")
    await request.app[ACCOUNTS].check()  # revoke now, not at the next poll
    return await _page(request, admin, message=f"{name} is {done}.", new_secret=new_secret)
