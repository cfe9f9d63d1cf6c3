"""A short network drop resumes the session; a long one ends it.

The customer's client reaches the broker through a TCP relay in the test that
can cut every connection and refuse new ones for a while (a real drop: the
TLS sessions die, nothing is told to either side).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator

import pytest

from tests.e2e.test_support_session import start_shell
from tests.helpers import Customer, T


class Cable:
    """127.0.0.1 TCP pass-through that can be unplugged.

    It runs its own event loop in a thread: the test's loop blocks in pexpect.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.plugged = True
        self._writers: set[asyncio.StreamWriter] = set()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, "127.0.0.1", 0), self.loop).result(T)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.plugged:
            writer.transport.abort()
            return
        up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        self._writers |= {writer, up_w}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_w), pump(up_r, writer))

    def _unplug(self) -> None:
        self.plugged = False
        for w in self._writers:
            w.transport.abort()
        self._writers.clear()

    def unplug(self) -> None:
        self.loop.call_soon_threadsafe(self._unplug)

    def close(self) -> None:
        self.unplug()
        self.loop.call_soon_threadsafe(self._server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(T)


@pytest.fixture
def broker_args() -> list[str]:
    return ["--pair-timeout", "5", "--resume-window", "4"]


@pytest.fixture
def cable(broker) -> Iterator[Cable]:
    c = Cable(int(broker.url.rsplit(":", 1)[1]))
    yield c
    c.close()


@pytest.fixture
def remote_customer(broker, cable, customers, tmp_path) -> Customer:
    c = Customer(broker, "--consent-timeout", "5", url=f"https://127.0.0.1:{cable.port}",
                 tmp=tmp_path)
    customers.append(c)
    return c


async def test_short_drop_resumes_without_new_session_consent(tech, remote_customer, cable):
    customer = remote_customer
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send("echo before\r")
    await viewer.expect("before\r\n")
    cable.unplug()
    s = await tech.wait_for(sid, lambda s: not s["connected"], "client lost")
    assert s["state"] == "active"
    assert s["channels"][0]["state"] == "closed"  # nothing runs while the customer is away
    await asyncio.sleep(0.5)
    cable.plugged = True
    await asyncio.to_thread(customer.child.expect, "Reconnected: the session with")
    s = await tech.wait_for(sid, lambda s: s["connected"], "client back")
    assert s["state"] == "active"
    # a new shell needs a new yes for the shell, but no new session consent
    cid2 = await tech.open_shell(sid)
    await asyncio.to_thread(customer.accept_shell)
    await tech.wait_for(sid, lambda s: s["channels"][1]["state"] == "pairing", "pairing")
    again = await tech.attach(sid, cid2)
    await again.send("echo after\r")
    await again.expect("after\r\n")


async def test_long_drop_ends_the_session_and_the_client_gets_a_new_code(
        tech, remote_customer, cable):
    customer = remote_customer
    sid, cid = await start_shell(tech, customer)
    cable.unplug()
    s = await tech.wait_for(sid, lambda s: s["state"] == "ended", "ended after the window")
    assert s["end_reason"] == "the customer's connection was lost"
    cable.plugged = True
    code = await asyncio.to_thread(customer.code)  # a fresh code, a fresh session
    sid2 = await tech.session_id(code)
    assert sid2 != sid
    await asyncio.to_thread(customer.child.expect, "wants to start a remote support session",
                            3 * T)
