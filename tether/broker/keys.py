"""Typed application keys (aiohttp ``AppKey``) for the broker's shared state."""

from __future__ import annotations

from aiohttp import web

from .audit.log import AuditLog
from .auth.accounts import Accounts
from .auth.logins import Logins
from .auth.passwords import Passwords
from .config import Config
from .core import Core
from .store.sqlite import Store
from .web.consoles import Consoles

CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
AUDIT = web.AppKey("audit", AuditLog)
CORE = web.AppKey("core", Core)
CONSOLES = web.AppKey("consoles", Consoles)
LOGINS = web.AppKey("logins", Logins)
PASSWORDS = web.AppKey("passwords", Passwords)
ORIGINS = web.AppKey("origins", set)
ACCOUNTS = web.AppKey("accounts", Accounts)
