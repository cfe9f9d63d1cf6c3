"""Brokers for the attack suite: one per module (sync fixtures, so tests keep their own
event loops), each started with the flags that make its limits and timeouts short,
and a pool of fresh accounts (each TOTP step works once per account, so a test that
signs in takes accounts nobody has used)."""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from tests.helpers import TOTP_SEEDS, Broker
from tests.security.tools import PASSWORD, Browser, fresh


@dataclass
class Site:
    """A running broker and the accounts made for its module, by role."""

    broker: Broker
    pool: dict[str, list[str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, role: str = "technician", n: int = 1) -> list[str]:
        """``n`` accounts of ``role`` that no other test has signed in with."""
        with self._lock:
            left = self.pool.get(role, [])
            assert len(left) >= n, f"the module's pool has too few {role} accounts"
            taken, self.pool[role] = left[:n], left[n:]
        return taken


async def _create(broker: Broker, admin: str, wanted: list[tuple[str, str]]) -> None:
    """Adds accounts through the admin page (one argon2 hash each, in the broker), which
    is much quicker than one ``tether-broker user add`` process per account."""
    b = Browser(broker)
    try:
        await b.signed_in(admin)
        await b.page("/admin")
        gate = asyncio.Semaphore(4)

        async def one(name: str, role: str) -> None:
            async with gate:
                status, page = await b.post("/admin/users", {
                    "name": name, "role": role, "password": PASSWORD,
                    "display_name": f"Dr {name}", "org": "Sec Org", "csrf": b.csrf})
            found = re.search(r"secret=([A-Z2-7]+)", page)
            assert status == 200 and found, (status, page[:300])
            TOTP_SEEDS[(broker.data, name)] = found.group(1)

        await asyncio.gather(*(one(name, role) for name, role in wanted))
    finally:
        await b.close()


@pytest.fixture(scope="module")
def start_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Site]]:
    """``start_broker(*flags, technician=N, auditor=N, admin=N)``: a fresh broker on
    127.0.0.1:0 with that many fresh accounts per role; stopped when the module is done."""
    started: list[Broker] = []

    def start(*flags: str, **roles: int) -> Site:
        broker = Broker(tmp_path_factory.mktemp("sec") / "data", *flags).init()
        maker = fresh("maker")
        broker.add_user(maker, PASSWORD, role="admin", display="Account Maker")
        started.append(broker.start())
        site = Site(broker)
        wanted = [(fresh(role[:4]), role) for role, n in roles.items() for _ in range(n)]
        for name, role in wanted:
            site.pool.setdefault(role, []).append(name)
        if wanted:  # in a thread: the calling test may own this thread's event loop
            errors: list[BaseException] = []

            def run() -> None:
                try:
                    asyncio.run(_create(broker, maker, wanted))
                except BaseException as exc:
                    errors.append(exc)

            worker = threading.Thread(target=run)
            worker.start()
            worker.join()
            if errors:
                raise errors[0]
        return site

    yield start
    for broker in started:
        broker.stop()
