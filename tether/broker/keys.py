"""Typed application keys (aiohttp ``AppKey``) for the broker's shared state."""

from __future__ import annotations

from aiohttp import web

from .accounts import Accounts
from .audit import AuditLog
from .auth import Logins, Passwords
from .config import Config
from .hub import Hub
from .store import Store

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
AUDIT = web.AppKey("audit", AuditLog)
HUB = web.AppKey("hub", Hub)
LOGINS = web.AppKey("logins", Logins)
PASSWORDS = web.AppKey("passwords", Passwords)
ORIGINS = web.AppKey("origins", set)
ACCOUNTS = web.AppKey("accounts", Accounts)
