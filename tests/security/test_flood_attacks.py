"""Floods from outsiders and hostile clients: hellos, control messages, resume churn,
a session's record made huge, and the addresses that many real customers share.

Two brokers for the module. ``site`` has the real defaults for codes (10 new clients per
address per 10 min, 10 waiting per address) and short summary and resume settings
(summaries every second; 3 resumes at once, then one a second). ``busy`` gives 2 new
codes per address per 3 s and lets resumes through as fast as they come, to build a
session with thousands of events. Each test uses its own 127.x.y.z source addresses
(127.0.0.1 only for the real client process, which cannot choose).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.helpers import Broker, Customer, T
from tests.security.conftest import Site
from tests.security.tools import FakeAgent, browser, shell_session

BURST = 60  # the default control-message burst (config.control_burst)


@pytest.fixture(scope="module")
def site(start_broker) -> Site:
    return start_broker("--summary-interval", "1", "--resume-burst", "3", "--resume-every", "1",
                        "--consent-wait", "8", "--pair-timeout", "5", technician=4)


@pytest.fixture(scope="module")
def busy(start_broker) -> Site:
    return start_broker("--new-codes-per-ip", "2", "--new-code-window", "3",
                        "--resume-burst", "1000000", "--resume-every", "0.001",
                        "--consent-wait", "8", technician=1, auditor=1)


def db(broker: Broker, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{broker.data / 'tether.db'}?mode=ro", uri=True) as conn:
        return conn.execute(sql, args).fetchall()


def disk(broker: Broker) -> int:
    """Bytes of the audit database (with its write-ahead log) and broker.log."""
    files = [broker.data / "tether.db", broker.data / "tether.db-wal", broker.log]
    return sum(f.stat().st_size for f in files if f.exists())


async def hello_and_go(broker: Broker, ip: str) -> int | None:
    """One outsider's try: connect, say hello, leave at the first answer; the close
    code if the broker closed first."""
    agent = FakeAgent(broker, ip)
    try:
        await agent.connect()
        assert agent.ws is not None
        await asyncio.wait_for(agent.ws.recv(), 2 * T)
        return None
    except ConnectionClosed as exc:
        return exc.rcvd.code if exc.rcvd else 1006
    finally:
        await agent.close()


async def test_a_hello_flood_from_one_address_adds_a_few_summary_events_and_no_disk(site):
    """400 connect/hello/close from one address used to write 1,200 audit events (three
    each, never deleted) until the disk guard refused every shell. Now the first 10 get
    a code (``code.issued`` stays one event each, written before the code is sent), the
    rest are told the broker is busy (4503), and all of them are one ``client.connections``
    summary per second for that address, whose counts add up to the 400."""
    broker = site.broker
    ip, n = "127.0.60.1", 400
    before_events = db(broker, "SELECT COUNT(*) FROM audit_events")[0][0]
    before_disk = disk(broker)
    gate = asyncio.Semaphore(16)

    async def one() -> int | None:
        async with gate:
            return await hello_and_go(broker, ip)

    codes = await asyncio.gather(*(one() for _ in range(n)))
    assert codes.count(None) == 10 and codes.count(4503) == n - 10, sorted(map(str, codes))
    summaries: list[dict[str, Any]] = []
    for _ in range(int(6 * T)):  # bounded: summaries are written every second
        rows = db(broker, "SELECT detail FROM audit_events WHERE action = 'client.connections'"
                          " AND ip = ?", ip)
        summaries = [json.loads(d) for (d,) in rows]
        if sum(s["connected"] + s["refused_busy"] for s in summaries) == n \
                and sum(s["left_without_session"] for s in summaries) == 10:
            break
        await asyncio.sleep(0.5)
    assert sum(s["connected"] for s in summaries) == 10
    assert sum(s["refused_busy"] for s in summaries) == n - 10
    assert sum(s["left_without_session"] for s in summaries) == 10
    added = db(broker, "SELECT action, COUNT(*) FROM audit_events WHERE seq > ?"
                       " GROUP BY action", before_events)
    by_action = dict(added)
    assert by_action.get("code.issued") == 10
    assert sum(by_action.values()) <= 10 + len(summaries) + 5, by_action  # + checkpoints
    assert len(summaries) < 20
    assert disk(broker) - before_disk < 200_000  # it was megabytes
    assert broker.alive()


async def test_a_control_message_flood_closes_that_connection_and_not_another_session(site):
    """A customer's client in a session floods its control channel: 5,000 heartbeats,
    then 'late' session decisions (each used to be a broker.log line). The broker
    closes that connection with 4429 and says why, after about the burst; another
    session on the same broker keeps working (its technician's next shell request
    reaches its customer), and broker.log got no line per message."""
    attacker_tech, victim_tech = site.take(n=2)
    broker = site.broker
    tech = await browser(broker, victim_tech, "127.0.61.1")
    victim = await FakeAgent(broker, "127.0.61.2").connect()
    hostile_tech = await browser(broker, attacker_tech, "127.0.61.3")
    hostile = await FakeAgent(broker, "127.0.61.4").connect()
    try:
        sid, _, _ = await shell_session(tech, victim)
        code = await hostile.code()
        hostile_sid = await hostile_tech.session_id(code)
        await hostile.accept_session()
        await hostile_tech.wait_for(hostile_sid, lambda s: s["state"] == "active", "consent")
        lines_before = broker.log_text().count("late session decision ignored")
        assert hostile.ws is not None
        sent, closed = 0, None
        try:
            for i in range(5000):
                late = {"type": "session_decision", "allow": True, "reason": "yes",
                        "machine": "m", "user": "u", "os": "o"}
                await hostile.ws.send(json.dumps(late if i % 2 else {"type": "heartbeat"}))
                sent += 1
        except ConnectionClosed as exc:
            closed = exc.rcvd
        if closed is None:
            code_reason = await hostile.closed()
        else:
            code_reason = (closed.code, closed.reason)
        assert code_reason == (4429, "too many control messages"), code_reason
        status, body = await tech.api("POST", f"/api/sessions/{sid}/channels",
                                      {"kind": "terminal", "cols": 80, "rows": 24})
        assert status == 202, body
        assert (await victim.next("channel_request"))["kind"] == "terminal"
        late_lines = broker.log_text().count("late session decision ignored") - lines_before
        assert late_lines <= 20, late_lines
        assert broker.alive()
    finally:
        for thing in (victim, hostile, tech, hostile_tech):
            await thing.close()


async def resume_once(broker: Broker, ip: str, secret: str) -> tuple[FakeAgent, list[str]]:
    """A dropped client comes back: (its new connection, the types it got up to the
    new resume token)."""
    agent = await FakeAgent(broker, ip).connect({"type": "resume", "secret": secret,
                                                 "version": "sec", "os": "Linux"})
    await agent.next("resume_token", 3 * T)
    return agent, [m["type"] for m in agent.seen]


async def test_resume_churn_is_slowed_but_drops_in_a_row_still_resume(site):
    """Flaky Wi-Fi: three drops in a row resume at once, no message. A client that
    keeps dropping and resuming (once per round trip, 4,000 times in 20 s in the attack
    pass) is slowed to one resume a second: each further resume is preceded by a notice
    saying when it goes on -- and still resumes; the session is never ended for it."""
    (name,) = site.take()
    broker = site.broker
    ip = "127.0.62.1"
    tech = await browser(broker, name, "127.0.62.2")
    agent = await FakeAgent(broker, ip).connect()
    try:
        code = await agent.code()
        sid = await tech.session_id(code)
        await agent.accept_session()
        secret = (await agent.next("resume_token"))["secret"]
        seen: list[list[str]] = []
        for _ in range(6):  # 3 in the burst, then 3 slowed
            await agent.close()
            agent, types = await resume_once(broker, ip, secret)
            secret = agent.seen[-1]["secret"]
            seen.append(types)
        assert all(types[-2:] == ["resumed", "resume_token"] for types in seen), seen
        assert [("notice" in types) for types in seen] == [False] * 3 + [True] * 3, seen
        notice = next(m for m in agent.seen if m["type"] == "notice")
        assert re.fullmatch(r"Reconnecting too often: the session resumes in \d+ s\.",
                            notice["text"]), notice
        state = await tech.state(sid)
        assert state["state"] == "active"
        resumed = db(broker, "SELECT COUNT(*) FROM audit_events WHERE session_id = ? AND"
                             " action = 'session.resumed'", sid)[0][0]
        assert resumed == 6
    finally:
        await agent.close()
        await tech.close()


async def test_six_clients_behind_one_address_all_get_codes(site):
    """An office behind one NAT address: one customer is already in a session and six
    more start their clients. Each of the six gets a code (customers in a session hold
    no code and count against nothing; the limit is on new clients per window)."""
    (name,) = site.take()
    broker = site.broker
    ip = "127.0.63.1"
    tech = await browser(broker, name, "127.0.63.2")
    first = await FakeAgent(broker, ip).connect()
    agents: list[FakeAgent] = []
    try:
        sid = await tech.session_id(await first.code())
        await first.accept_session()
        await tech.wait_for(sid, lambda s: s["state"] == "active", "consent")
        for _ in range(6):
            agents.append(await FakeAgent(broker, ip).connect())
        codes = [await a.code() for a in agents]
        assert len(set(codes)) == 6
    finally:
        for thing in (first, *agents, tech):
            await thing.close()


async def test_a_client_told_the_broker_is_busy_waits_and_retries(busy, tmp_path):
    """The address's new codes for the window are used up (two, on this broker). A real
    customer's client starting then is not refused for good (exit 4): it says the
    broker is busy and that it tries again, and when the window has passed it shows a
    code."""
    broker = busy.broker
    fillers = [await FakeAgent(broker).connect() for _ in range(2)]
    customer = Customer(broker, tmp=tmp_path)
    try:
        for f in fillers:
            await f.code()
        customer.child.expect(r"The broker is busy \(too many new clients from this "
                              r"address\); trying again in \d+ s\. Press Ctrl-C to stop\.")
        for f in fillers:
            await f.close()
        code = await asyncio.to_thread(customer.child.expect,
                                       r"Session code: \d{3} \d{3} \d{3}", 4 * T)
        assert code == 0 and customer.child.isalive()
    finally:
        customer.close()
        for f in fillers:
            await f.close()


async def test_the_record_of_a_session_with_thousands_of_events_is_paged(busy):
    """Resume churn (let through as fast as it comes on this broker) gives one session
    over 2,000 events. Its record page shows 200 of them with a link to the next page,
    the last page holds the rest, and a request sent at the same time is answered."""
    (tech_name,) = busy.take()
    (auditor_name,) = busy.take("auditor")
    broker = busy.broker
    ip = "127.0.64.1"
    tech = await browser(broker, tech_name, "127.0.64.2")
    auditor = await browser(broker, auditor_name, "127.0.64.3")
    agent = await FakeAgent(broker, ip).connect()
    try:
        sid = await tech.session_id(await agent.code())
        await agent.accept_session()
        secret = (await agent.next("resume_token"))["secret"]
        for _ in range(1000):  # two events each: session.client_lost, session.resumed
            await agent.close()
            agent, _ = await resume_once(broker, ip, secret)
            secret = agent.seen[-1]["secret"]
        total = db(broker, "SELECT COUNT(*) FROM audit_events WHERE session_id = ?", sid)[0][0]
        assert total > 2000
        pages = -(-total // 200)
        (status, page), (other, _) = await asyncio.gather(
            auditor.page(f"/audit/sessions/{sid}"), tech.page("/dashboard"))
        assert status == 200 and other == 200
        assert page.count("<tr data-seq=") == 200
        assert f"Page 1 of {pages} ({total} events)" in page
        assert f'href="/audit/sessions/{sid}?page=2#timeline-heading">Next</a>' in page
        status, last = await auditor.page(f"/audit/sessions/{sid}?page={pages}")
        assert status == 200 and last.count("<tr data-seq=") == total - 200 * (pages - 1)
        assert ">Previous</a>" in last and ">Next</a>" not in last
    finally:
        await agent.close()
        await tech.close()
        await auditor.close()
