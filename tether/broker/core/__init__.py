"""The session core: one API for every front door (see ``api.py``).

Imports no aiohttp, asyncssh or SQL driver (a test checks): it reaches the
network through :class:`~.agents.Agent` and the pump's ends, the database
through ``store/base.py``'s interfaces, and the log through ``AuditSink``.
"""

from __future__ import annotations

from .agents import Agent, Gone
from .api import Core
from .sessions import Channel, Session

__all__ = ["Agent", "Channel", "Core", "Gone", "Session"]
