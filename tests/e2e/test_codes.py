"""Session codes: wrong, mistyped, reused, expired, and the limits."""

from __future__ import annotations

import json
import sqlite3
import ssl

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import PASSWORD, make_broker
from tests.helpers import Customer, T, Technician


def typo(code: str) -> str:
    digits = code.replace(" ", "")
    return digits[:3] + str((int(digits[3]) + 1) % 10) + digits[4:]


def other_valid(code: str) -> str:
    """A well-formed code (correct check digit) that was never issued."""
    from tether.protocol.codes import damm

    body = code.replace(" ", "")[:8]
    body = body[:7] + str((int(body[7]) + 1) % 10)
    return body + str(damm(body))


async def test_wrong_code_mistyped_code_and_reuse(tech, customer):
    code = customer.code()
    status, path, page = await tech.redeem(other_valid(code))
    assert status == 400 and "That code is not valid" in page
    status, path, page = await tech.redeem(typo(code))
    assert status == 400 and "typo" in page
    status, path, page = await tech.redeem("١٢٣٤٥٦٧٨٩")  # Arabic-Indic digits
    assert status == 400
    # spaces and dashes are fine
    status, path, _ = await tech.redeem(code.replace(" ", "-"))
    assert status == 200 and path.startswith("/sessions/")
    status, _, page = await tech.redeem(code)
    assert status == 400 and "That code is not valid" in page


@pytest.fixture
def broker_args() -> list[str]:
    return ["--code-ttl", "1.5", "--redeem-failures", "3", "--fail-window", "60"]


async def test_expired_code_is_refused_and_a_new_one_printed(tech, customer):
    first = customer.code()
    second = customer.code()  # printed when the first expires
    assert first != second
    status, _, page = await tech.redeem(first)
    assert status == 400
    status, path, _ = await tech.redeem(second)
    assert status == 200 and path.startswith("/sessions/")


async def test_typos_cost_no_attempt(tech, customer):
    code = customer.code()
    for _ in range(5):  # more than the limit of 3
        status, _, page = await tech.redeem(typo(code))
        assert status == 400 and "typo" in page
    status, path, _ = await tech.redeem(code)
    assert status == 200 and path.startswith("/sessions/")


async def test_too_many_failures_answers_429(tech, customer, broker):
    code = customer.code()
    for _ in range(3):
        status, _, _ = await tech.redeem(other_valid(code))
        assert status == 400
    status, _, page = await tech.redeem(code)
    assert status == 429
    assert "Too many attempts — try again in 1 min" in page
    assert "ask an admin to clear your code-entry limit" in page
    assert broker.alive()
    assert code.replace(" ", "") not in broker.log_text()
    broker.stop()  # at shutdown the failure summary is written
    with sqlite3.connect(broker.data / "tether.db") as db:
        rows = db.execute("SELECT actor, ip, detail FROM audit_events"
                          " WHERE action = 'code.redeem_failed'").fetchall()
    # one summary row for the window, not one per try, and no code in it
    assert len(rows) == 1
    actor, ip, detail = rows[0]
    assert actor == "alice" and ip == "127.0.0.1"
    assert json.loads(detail)["count"] == 4
    assert code.replace(" ", "") not in detail


async def test_waiting_clients_per_ip_are_limited_and_the_next_one_waits(tmp_path):
    """Two clients wait with codes from this address (the limit here): a third is told the
    broker is busy and keeps trying (no exit 4); connections that never said a valid
    hello take and free no place; when a waiting customer leaves, the third gets a code."""
    broker = make_broker(tmp_path / "d", "--max-codes-per-ip", "2").start()
    made = []
    try:
        for _ in range(2):
            c = Customer(broker, tmp=tmp_path)
            made.append(c)
            c.code()
        third = Customer(broker, tmp=tmp_path)
        made.append(third)
        busy = r"The broker is busy \(too many clients waiting from this address\); trying again"
        third.child.expect(busy)
        # connections that never said a valid hello must not free a place
        for _ in range(4):
            ws = await connect(broker.url.replace("https", "wss") + "/ws/agent",
                               ssl=ssl.create_default_context(cafile=str(broker.ca)))
            await ws.send("{not json")
            with pytest.raises(ConnectionClosed):
                await ws.recv()
        third.child.expect(busy, timeout=3 * T)
        made[0].close()  # a waiting customer gives up: the third gets its place
        third.child.expect(r"Session code: \d{3} \d{3} \d{3}", timeout=3 * T)
        assert third.child.isalive()
        tech = Technician(broker)
        await tech.login("alice", PASSWORD)
        await tech.close()
    finally:
        for c in made:
            c.close()
        broker.stop()
