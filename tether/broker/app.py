"""aiohttp application factory: routes, middlewares and resources in order.

``cleanup_ctx`` opens the store, then the audit writer, then the hub, and
closes them in reverse: at shutdown live sessions are ended (and audited)
before the audit writer drains and the database closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from ..protocol import vocabulary
from . import certs, housekeeping
from .audit.checkpoints import Forwarder
from .audit.log import AuditLog
from .auth.accounts import Accounts
from .auth.logins import Logins
from .auth.passwords import Passwords
from .config import Config
from .core import Core
from .keys import ACCOUNTS, AUDIT, CONFIG, CONSOLES, CORE, LOGINS, ORIGINS, PASSWORDS, STORE
from .store.sqlite import Store
from .web import admin_views, audit_views, views, ws
from .web.consoles import SWEEP_EVERY, Consoles
from .web.security import STATIC, security_headers, translate_errors

HERE = Path(__file__).parent
log = logging.getLogger("tether.broker")


async def _resources(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    store = await Store.open(config.db_path)
    app[STORE] = store
    forwarder = Forwarder(config.checkpoint_url, config.checkpoint_ca, config.checkpoint_syslog)
    await forwarder.start()
    audit = AuditLog(store, certs.load_audit_key(config.certs), data=config.data,
                     every=config.checkpoint_every, interval=config.checkpoint_interval,
                     forward=forwarder if forwarder.enabled else None)
    await audit.start()
    app[AUDIT] = audit
    stale = await store.end_stale_sessions("the broker restarted")
    app[CORE] = core = Core(config, store, audit)
    app[LOGINS] = logins = Logins(store, config)
    app[ACCOUNTS] = accounts = Accounts(config, store, audit, app[PASSWORDS], logins)
    consoles = app[CONSOLES]
    # Revocation is an event: the core ends what the user has open, then their
    # console sockets close. Accounts know neither.
    accounts.revocation_listeners += [core.revoked, consoles.revoked]
    await accounts.start()
    await audit.append("broker.started", actor="broker", stale_sessions_ended=stale)
    background = [asyncio.create_task(housekeeping.run(config, store, audit), name="housekeeping"),
                  asyncio.create_task(accounts.watch(), name="account-watcher"),
                  asyncio.create_task(_sweep_consoles(consoles, logins), name="console-sweep")]
    yield
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)
    await core.shutdown()
    try:
        await accounts.flush_failures()
    except Exception:
        log.error("could not audit the last sign-in failures")
    try:
        await audit.append("broker.stopped", actor="broker")
    except Exception:
        log.error("could not audit the shutdown")
    await audit.close()
    await forwarder.close()
    await store.close()
    app[PASSWORDS].close()


async def _summaries(app: web.Application) -> AsyncIterator[None]:
    async def loop() -> None:
        while True:
            await asyncio.sleep(app[CONFIG].summary_window)
            try:
                await app[CORE].flush_summaries()
                await app[ACCOUNTS].flush_failures()
            except Exception:
                log.exception("could not write failure summary")

    task = asyncio.create_task(loop())
    yield
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def _sweep_consoles(consoles: Consoles, logins: Logins) -> None:
    """A console socket lives only as long as its login: close the expired ones."""
    while True:
        await asyncio.sleep(SWEEP_EVERY)
        try:
            await consoles.sweep(logins.valid)
        except Exception:
            log.exception("console sweep failed")


def make_app(config: Config) -> web.Application:
    app = web.Application(middlewares=[translate_errors], client_max_size=64 * 1024)
    app.on_response_prepare.append(security_headers)
    app[CONFIG] = config
    app[ORIGINS] = config.origins()
    app[PASSWORDS] = Passwords()
    app[CONSOLES] = Consoles()
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(default=True),
    )
    env.globals["vocab"] = vocabulary.export()
    app.add_routes(views.routes)
    app.add_routes(audit_views.routes)
    app.add_routes(admin_views.routes)
    app.router.add_get("/ws/agent", ws.agent_control)
    app.router.add_get("/ws/relay/agent", ws.relay_agent)
    app.router.add_get("/ws/relay/viewer", ws.relay_viewer)
    app.router.add_get("/ws/live", ws.live)
    app.router.add_static(STATIC, HERE / "static", follow_symlinks=False)
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(_summaries)
    return app
