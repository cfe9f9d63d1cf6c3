"""Who may read what in the Audit section, against one real broker for the module.

The broker's database is seeded before it starts (technicians' past sessions
with their hash-chained events, one fake recording of another technician),
then one real session is recorded through a real client in a PTY. The
checks are what a security reviewer would try by hand: signed out, as
another technician, with guessed ids and path tricks, as an auditor pressing
buttons that change things, and as an admin; then the SIEM export and the
search filters and pages.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import re
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pexpect
import pytest
import pytest_asyncio
from yarl import URL

from tests.conftest import PASSWORD, make_broker
from tests.e2e.test_audit_console import recorded_session
from tests.e2e.test_audit_escaping import customer_as
from tests.helpers import Broker, Customer, Technician
from tether.protocol.canon import GENESIS, chain, row_canon

pytestmark = pytest.mark.asyncio(loop_scope="module")

MARKER = "idor-canary"
MACHINE = "lit_100%_host"  # the recorded session's machine: LIKE wildcards, literally
DAY_US = 86_400_000_000
PAGE_SIZE = 25
ERIN_SESSIONS = 30
FILLER_EVENTS = 2100  # more than one page (2000) of the streamed SIEM export
OLD_DAYS = {"bob-day-10": "2024-03-10T12:00:00", "bob-day-11-late": "2024-03-11T23:59:59.999999",
            "bob-day-12-start": "2024-03-12T00:00:00"}
OUTCOME_ROWS = {"bob-completed": ("ended", "allowed"), "bob-refused": ("ended", "refused"),
                "bob-unanswered": ("ended", "timeout"), "bob-cancelled": ("ended", "pending")}


@dataclasses.dataclass
class World:
    broker: Broker
    sid: str  # alice's recorded session
    cid: str  # its recorded channel
    seeded: dict[str, str]  # machine name -> session id of the seeded rows
    bob_cid: str  # a recording of bob's "bob-completed" session
    erin_newest_first: list[str]


def us(iso_text: str) -> int:
    return int(dt.datetime.fromisoformat(iso_text).replace(tzinfo=dt.UTC).timestamp() * 10**6)


def today() -> str:
    return dt.datetime.now(dt.UTC).date().isoformat()


def now_us() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 10**6)


def seed(data: Path) -> tuple[dict[str, str], str, list[str]]:
    """Past sessions of bob and erin, each with its events, chained like the broker does."""
    con = sqlite3.connect(data / "tether.db")
    try:
        users = dict(con.execute("SELECT name, id FROM users").fetchall())
        # init and user add write no events, so the chain starts here
        assert con.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0] == 0
        start = now_us() - 60 * 10**6
        sessions: list[tuple[Any, ...]] = []
        seeded: dict[str, str] = {}
        erin_ids: list[str] = []
        for i in range(ERIN_SESSIONS):
            sid = f"s_seed-erin-{i:02d}-{secrets.token_hex(3)}"
            sessions.append((sid, users["erin"], "ended", "allowed", start + i * 1000,
                             f"page-host-{i:02d}", "erin"))
            seeded[f"page-host-{i:02d}"] = sid
            erin_ids.append(sid)
        for j, (machine, (state, consent)) in enumerate(OUTCOME_ROWS.items()):
            sid = f"s_seed-{machine}-{secrets.token_hex(3)}"
            sessions.append((sid, users["bob"], state, consent, start + 100_000 + j, machine,
                             "bob"))
            seeded[machine] = sid
        for machine, when in OLD_DAYS.items():
            sid = f"s_seed-{machine}-{secrets.token_hex(3)}"
            sessions.append((sid, users["bob"], "ended", "allowed", us(when), machine, "bob"))
            seeded[machine] = sid
        events: list[tuple[Any, ...]] = []  # (ts_us, session_id, actor, action, ip, detail)
        for sid, _tech, _state, consent, created, machine, tech in sessions:
            events.append((created, sid, tech, "session.claimed", "127.0.0.1",
                           {"client_ip": "127.0.0.1", "client_os": "Linux"}))
            if consent == "allowed":
                events.append((created + 1, sid, "customer", "session.consented", "127.0.0.1",
                               {"machine": machine, "os": "Linux", "user": "cust"}))
            elif consent == "refused":
                events.append((created + 1, sid, "customer", "session.refused", "127.0.0.1",
                               {"reason": "no"}))
            elif consent == "timeout":
                events.append((created + 1, sid, "broker", "session.consent_timeout", None, {}))
            events.append((created + 2, sid, tech, "session.ended", "127.0.0.1",
                           {"reason": f"ended by {tech}"}))
        for k in range(FILLER_EVENTS):
            events.append((start + k, None, "erin", "user.signed_in", "127.0.0.1", {}))
        prev, rows = GENESIS, []
        for seq, (ts, sid, actor, action, ip, detail) in enumerate(events, start=1):
            text = json.dumps(detail, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
            head = chain(prev, hashlib.sha256(
                row_canon(seq, ts, sid, actor, action, ip, text)).digest())
            rows.append((seq, ts, sid, actor, action, ip, text, prev, head))
            prev = head
        con.executemany(
            "INSERT INTO sessions (id, technician_id, state, consent, created_us, ended_us,"
            " end_reason, client_ip, machine, os, customer_user)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, '127.0.0.1', ?, 'Linux', 'cust')",
            [(sid, tid, state, consent, created, created + 2,
              f"ended by {tech}" if consent != "pending" else "cancelled", machine)
             for sid, tid, state, consent, created, machine, tech in sessions])
        con.executemany("INSERT INTO audit_events (seq, ts_us, session_id, actor, action, ip,"
                        " detail, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        # a recording of bob's, on disk and in the table, to guess at from alice's session
        bob_sid, bob_cid = seeded["bob-completed"], "c_bobs-" + secrets.token_hex(4)
        rel = Path("recordings") / bob_sid / f"{bob_cid}.cast"
        body = b'{"version": 2, "width": 80, "height": 24}\n[0.1, "o", "bob-only-data"]\n'
        (data / rel).parent.mkdir(parents=True)
        (data / rel).write_bytes(body)
        con.execute("INSERT INTO recordings (session_id, channel_id, path, sha256, bytes,"
                    " closed_us) VALUES (?, ?, ?, ?, ?, ?)",
                    (bob_sid, bob_cid, str(rel), hashlib.sha256(body).hexdigest(), len(body),
                     start))
        con.commit()
    finally:
        con.close()
    return seeded, bob_cid, erin_ids[::-1]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("audit-access")
    broker = make_broker(tmp / "data", "--pair-timeout", "5", "--consent-wait", "8")
    broker.add_user("bob", PASSWORD, display="Bob Stone", org="Acme IT")
    broker.add_user("erin", PASSWORD, display="Erin Page", org="Acme IT")
    broker.add_user("carol", PASSWORD, role="auditor", display="Carol Audit", org="Acme Audit")
    broker.add_user("dave", PASSWORD, role="admin", display="Dave Admin", org="Acme IT")
    seeded, bob_cid, erin_ids = seed(broker.data)
    broker.start()
    alice = Technician(broker)
    customer = customer_as(broker, tmp / "customer", machine=MACHINE)
    try:
        assert (await alice.login("alice", PASSWORD))[0] == 200
        sid, cid = await recorded_session(alice, customer, MARKER)
        yield World(broker, sid, cid, seeded, bob_cid, erin_ids)
    finally:
        customer.close()
        await alice.close()
        broker.stop()


# --- helpers ---------------------------------------------------------------------------


async def signed_in(broker: Broker, name: str) -> Technician:
    client = Technician(broker)
    await client.sign_in_once(name, PASSWORD)
    return client


async def fetch(client: Technician, path: str, *, raw: bool = False,
                headers: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
    """GET without following redirects; ``raw`` sends the path exactly as written."""
    url: Any = URL(client.url + path, encoded=True) if raw else client.url + path
    async with client.http.get(url, allow_redirects=False, headers=headers) as r:
        return r.status, await r.read(), r.headers


def session_urls(sid: str, cid: str) -> list[str]:
    """Every URL of one session in the Audit section (the timeline, recording, exports)."""
    return [f"/audit/sessions/{sid}", f"/api/audit/sessions/{sid}/recordings/{cid}",
            f"/audit/sessions/{sid}/recordings/{cid}.cast", f"/audit/sessions/{sid}/events.jsonl",
            f"/audit/sessions/{sid}/events.csv", f"/audit/sessions/{sid}/bundle.zip"]


def range_urls(since: str, until: str) -> list[str]:
    return [f"/audit/export.jsonl?from={since}&to={until}",
            f"/audit/bundle.zip?from={since}&to={until}"]


def listed(page: str) -> list[str]:
    """The session ids of an /audit result page, in the order shown."""
    return re.findall(r'data-session-id="([^"]+)"', page)


def result_count(page: str) -> int:
    m = re.search(r'id="result-count">(\d+) sessions?<', page)
    assert m, "no result count on the page"
    return int(m.group(1))


def db(broker: Broker, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(broker.data / "tether.db")
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()


def denied_events(broker: Broker, after: int = 0) -> list[dict[str, Any]]:
    return [{"seq": seq, "actor": actor, **json.loads(detail)} for seq, actor, detail in db(
        broker, "SELECT seq, actor, detail FROM audit_events WHERE action = 'access.denied'"
        " AND seq > ? ORDER BY seq", after)]


def head_seq(broker: Broker) -> int:
    return int(db(broker, "SELECT COALESCE(MAX(seq), 0) FROM audit_events")[0][0])


def reads_audited(broker: Broker) -> int:
    """How many views, plays and exports the log holds."""
    return int(db(broker, "SELECT COUNT(*) FROM audit_events WHERE action IN"
                          " ('audit.viewed', 'recording.accessed', 'audit.exported')")[0][0])


def no_prompt(customer: Customer, *names: str) -> None:
    """The customer's terminal asks nothing new (and names none of ``names``)."""
    got = customer.child.expect([r"\[y/N\]", pexpect.TIMEOUT], timeout=0.5)
    assert got == 1, "the customer was asked something: " + customer.child.before[-300:]
    for name in names:
        assert name not in customer.child.before, name


# --- signed out --------------------------------------------------------------------------


async def test_signed_out_visitors_are_sent_to_sign_in_and_get_no_data(world):
    """Without signing in (or with a made-up login cookie), every Audit URL sends the
    browser to the sign-in page (the player's API answers 401), reveals nothing and
    leaves no "viewed" or "exported" record behind."""
    broker, day = world.broker, today()
    urls = ["/audit", *session_urls(world.sid, world.cid), *range_urls(day, day)]
    before = reads_audited(broker)
    anon = Technician(broker)
    try:
        for cookie in (None, "__Host-tether=" + secrets.token_urlsafe(32)):
            for url in urls:
                status, body, headers = await fetch(
                    anon, url, headers={"Cookie": cookie} if cookie else None)
                if url.startswith("/api/"):
                    assert status == 401, url
                    assert json.loads(body) == {"error": "sign in first"}, url
                else:
                    assert status == 303 and headers["Location"] == "/login", (url, status)
                assert MARKER.encode() not in body and world.sid.encode() not in body, url
    finally:
        await anon.close()
    assert reads_audited(broker) == before


# --- another technician --------------------------------------------------------------------


async def test_another_technician_finds_nothing_of_a_session_not_theirs(world):
    """Bob, also a technician, opening any URL of Alice's session gets "not found" -- the
    same answer as for a session that does not exist, so he cannot even tell it exists;
    Alice's session is in none of his searches; and the date-range exports (for auditors
    and admins) refuse him with 403, which the audit log records."""
    broker = world.broker
    bob = await signed_in(broker, "bob")
    made_up = "s_" + secrets.token_urlsafe(12)
    try:
        before, mark = reads_audited(broker), head_seq(broker)
        for real, fake in zip(session_urls(world.sid, world.cid),
                              session_urls(made_up, world.cid), strict=True):
            status, body, _ = await fetch(bob, real)
            assert status == 404, (real, status)
            assert MARKER.encode() not in body and b"127.0.0.1" not in body, real
            assert (status, body) == (await fetch(bob, fake))[:2], real  # indistinguishable
        assert reads_audited(broker) == before  # nothing was shown, so nothing to record

        # his own list: his sessions only, and no filter brings Alice's back
        for query in ("", "?technician=alice", f"?machine={MACHINE[:3]}", "?q=lit",
                      "?outcome=completed", f"?from={today()}&to={today()}"):
            status, page = await bob.page("/audit" + query)
            assert status == 200 and world.sid not in page, query
            assert "Your sessions" in page and "Export a date range" not in page
        status, page = await bob.page("/audit")
        bobs = {world.seeded[m] for m in (*OUTCOME_ROWS, *OLD_DAYS)}
        assert set(listed(page)) == bobs and result_count(page) == len(bobs)
        assert "lit_100" not in page and "Alice Martin" not in page

        # the date-range exports are for auditors and admins
        day = today()
        for url in range_urls(day, day):
            status, body, _ = await fetch(bob, url)
            assert status == 403 and body == b"your role does not allow this", url
        denied = denied_events(broker, mark)
        assert [(e["actor"], e["method"], e["path"]) for e in denied] == [
            ("bob", "GET", "/audit/export.jsonl"), ("bob", "GET", "/audit/bundle.zip")]
    finally:
        await bob.close()


async def test_guessed_session_and_channel_ids_are_not_found(world):
    """A made-up session id, or a real session paired with a channel id of another
    session, is "not found" for everyone -- the owner and the auditor included --
    while each recording still opens under its own session."""
    broker = world.broker
    alice, bob = await signed_in(broker, "alice"), await signed_in(broker, "bob")
    carol = await signed_in(broker, "carol")
    bob_sid = world.seeded["bob-completed"]
    try:
        for who in (alice, carol):
            for url in session_urls("s_" + secrets.token_urlsafe(12), world.cid):
                assert (await fetch(who, url))[0] == 404, url
            for url in session_urls(world.sid, world.bob_cid)[1:3]:  # the two recording URLs
                status, body, _ = await fetch(who, url)
                assert status == 404 and b"bob-only-data" not in body, url
        for url in session_urls(bob_sid, world.cid)[1:3]:
            status, body, _ = await fetch(carol, url)
            assert status == 404 and MARKER.encode() not in body, url
            status, body, _ = await fetch(bob, url)
            assert status == 404 and MARKER.encode() not in body, url
        # each recording is there under its own session, so the 404s above are the pairing
        status, body, _ = await fetch(bob, f"/audit/sessions/{bob_sid}/recordings/"
                                           f"{world.bob_cid}.cast")
        assert status == 200 and b"bob-only-data" in body
        status, body, _ = await fetch(alice, f"/api/audit/sessions/{world.sid}/recordings/"
                                             f"{world.cid}")
        assert status == 200 and MARKER.encode() in body
    finally:
        for c in (alice, bob, carol):
            await c.close()


async def test_path_tricks_reach_no_recording_or_file(world):
    """Dot segments, encoded dots and slashes in a session or channel id give no data:
    not Alice's recording to Bob, and no file of the broker's data directory to anyone."""
    broker, sid, cid = world.broker, world.sid, world.cid
    alice, bob = await signed_in(broker, "alice"), await signed_in(broker, "bob")
    bob_sid = world.seeded["bob-completed"]
    tricks_for_bob = [
        f"/audit/sessions/{sid}/recordings/../{cid}.cast",
        f"/audit/sessions/{sid}/recordings/%2e%2e/{cid}.cast",
        f"/audit/sessions/{bob_sid}/recordings/..%2F..%2F{sid}%2F{cid}.cast",
        f"/audit/sessions/{bob_sid}/recordings/%2e%2e%2f%2e%2e%2f{sid}%2f{cid}.cast",
        f"/api/audit/sessions/{bob_sid}/recordings/..%2F..%2F{sid}%2F{cid}",
        f"/api/audit/sessions/{bob_sid}/..%2F{sid}/recordings/{cid}",
        f"/audit/sessions/{bob_sid}%2F..%2F{sid}/events.jsonl",
        f"/audit/sessions/{bob_sid}/../{sid}/events.csv",
        f"/audit/sessions/{bob_sid}/%2e%2e/{sid}/bundle.zip",
        f"/audit/sessions/{sid}%00/events.jsonl",
    ]
    tricks_for_files = [
        f"/audit/sessions/{sid}/recordings/..%2F..%2Ftether.db.cast",
        f"/api/audit/sessions/{sid}/recordings/..%2F..%2F..%2Ftether.db",
        f"/api/audit/sessions/{sid}/recordings/%2e%2e%2f%2e%2e%2fcerts%2faudit.key",
        f"/audit/sessions/{sid}/recordings/{cid}%2F..%2F..%2F..%2Ftether.db.cast",
        f"/audit/sessions/%2e%2e/recordings/{cid}.cast",
        "/audit/sessions/..%2F..%2Ftether.db/events.jsonl",
    ]
    try:
        for url in tricks_for_bob:
            status, body, _ = await fetch(bob, url, raw=True)
            assert status in (400, 403, 404), (url, status)
            assert MARKER.encode() not in body and b'"version": 2' not in body, url
        for url in tricks_for_files:
            status, body, _ = await fetch(alice, url, raw=True)
            assert status in (400, 403, 404), (url, status)
            assert b"SQLite format 3" not in body and b"PRIVATE KEY" not in body, url
            assert MARKER.encode() not in body, url
    finally:
        await alice.close()
        await bob.close()


# --- auditors only read ----------------------------------------------------------------------


async def test_an_auditor_cannot_take_over_or_change_a_live_session(world, tmp_path):
    """An auditor trying to redeem a customer's code, open a shell, attach to a channel or
    end a live session gets 403 each time, and each attempt is in the audit log with the
    auditor's name, the method and the path. The customer is asked nothing because of
    it, and the technician's session carries on normally."""
    broker = world.broker
    alice, carol = await signed_in(broker, "alice"), await signed_in(broker, "carol")
    customer = customer_as(broker, tmp_path, machine="live-machine")
    mark = head_seq(broker)
    try:
        code = customer.code()
        async with carol.http.post(carol.url + "/sessions",
                                   data={"code": code, "csrf": carol.csrf}) as r:
            assert r.status == 403, await r.text()
        no_prompt(customer, "Carol")

        # the code still works for the technician
        sid = await alice.session_id(code)
        customer.accept_session()
        await alice.wait_for(sid, lambda s: s["state"] == "active", "session consent")
        status, page = await carol.page("/audit?outcome=active")
        assert sid in listed(page) and world.sid not in listed(page)

        attempts = [("POST", f"/api/sessions/{sid}/channels",
                     {"kind": "terminal", "cols": 80, "rows": 24}),
                    ("POST", f"/api/sessions/{sid}/channels/c_{secrets.token_hex(4)}/attach",
                     None),
                    ("POST", f"/api/sessions/{sid}/end", None)]
        for method, path, body in attempts:
            status, answer = await carol.api(method, path, body)
            assert status == 403 and answer == {"error": "your role does not allow this"}, path
        no_prompt(customer, "Carol")
        s = await alice.state(sid)
        assert s["state"] == "active" and s["channels"] == []

        # the technician still works in it; with a real channel the auditor is refused too
        cid = await alice.open_shell(sid)
        customer.accept_shell()
        await alice.wait_for(sid, lambda s: s["channels"][0]["state"] == "pairing", "shell yes")
        viewer = await alice.attach(sid, cid)
        for method, path in (("POST", f"/api/sessions/{sid}/channels/{cid}/attach"),
                             ("POST", f"/api/sessions/{sid}/end")):
            assert (await carol.api(method, path))[0] == 403, path
        await viewer.send("echo still-$((40+2))\r")
        await viewer.expect("still-42")
        assert customer.child.isalive()

        denied = denied_events(broker, mark)
        assert [(e["actor"], e["method"], e["path"]) for e in denied] == [
            ("carol", "POST", "/sessions"),
            ("carol", "POST", f"/api/sessions/{sid}/channels"),
            ("carol", "POST", attempts[1][1]),
            ("carol", "POST", f"/api/sessions/{sid}/end"),
            ("carol", "POST", f"/api/sessions/{sid}/channels/{cid}/attach"),
            ("carol", "POST", f"/api/sessions/{sid}/end"),
        ]
        assert "technicians" in denied[0]["reason"]
        status, _ = await alice.end(sid)
        assert status == 200 and customer.wait_exit() == 0
        ended = db(broker, "SELECT actor FROM audit_events WHERE session_id = ? AND action ="
                           " 'session.ended'", sid)
        assert ended == [("alice",)]
    finally:
        customer.close()
        await alice.close()
        await carol.close()


# --- admins and auditors see everything ---------------------------------------------------


async def test_admins_and_auditors_see_every_session_and_export_ranges(world):
    """Auditors and admins search all technicians' sessions (the count matches the
    database), open any session and its recording, and can export a date range as
    JSONL and as a signed bundle."""
    broker, day = world.broker, today()
    total = db(broker, "SELECT COUNT(*) FROM sessions")[0][0]
    for name in ("carol", "dave"):
        who = await signed_in(broker, name)
        try:
            status, page = await who.page("/audit")
            assert status == 200 and "All sessions" in page and "Export a date range" in page
            assert result_count(page) == total, name
            for tech, expected in (("alice", {world.sid}),
                                   ("bob", {world.seeded[m] for m in (*OUTCOME_ROWS,
                                                                       *OLD_DAYS)})):
                status, page = await who.page(f"/audit?technician={tech}")
                assert set(listed(page)) >= expected, (name, tech)
            status, page = await who.page(f"/audit/sessions/{world.sid}")
            assert status == 200 and "Alice Martin" in page
            status, body, _ = await fetch(who, f"/api/audit/sessions/{world.sid}/recordings/"
                                               f"{world.cid}")
            assert status == 200 and MARKER.encode() in body
            status, body, headers = await fetch(who, range_urls(day, day)[0])
            assert status == 200 and headers["Content-Type"].startswith("application/x-ndjson")
            assert body.count(b"\n") > FILLER_EVENTS
            status, body, headers = await fetch(who, range_urls(day, day)[1])
            assert status == 200 and body.startswith(b"PK")
            assert headers["Content-Disposition"] == (
                f'attachment; filename="tether-audit-{day}-to-{day}.zip"')
        finally:
            await who.close()


# --- the SIEM export ----------------------------------------------------------------------


async def test_siem_export_streams_every_event_of_the_range_in_order(world):
    """The JSONL export for today has every event the database holds for today, in
    sequence order with its hashes, across more than one streamed page, including the
    record of this very export; a past range has exactly that range's events."""
    broker, day = world.broker, today()
    carol = await signed_in(broker, "carol")
    try:
        mark = head_seq(broker)
        status, body, headers = await fetch(carol, f"/audit/export.jsonl?from={day}&to={day}")
        assert status == 200
        assert headers["Content-Disposition"] == (
            f'attachment; filename="tether-audit-{day}-to-{day}.jsonl"')
        lines = [json.loads(line) for line in body.decode().splitlines()]
        since = us(day + "T00:00:00")
        expected = db(broker, "SELECT seq, ts_us, actor, action, detail, hash, prev_hash"
                              " FROM audit_events WHERE ts_us >= ? AND ts_us < ? AND seq <= ?"
                              " ORDER BY seq", since, since + DAY_US, lines[-1]["seq"])
        assert len(lines) == len(expected) > 2000
        for got, (seq, ts, actor, action, detail, hash_, prev) in zip(lines, expected,
                                                                      strict=True):
            assert (got["seq"], got["ts_us"], got["actor"], got["action"]) == (
                seq, ts, actor, action)
            assert got["detail"] == json.loads(detail)
            assert (got["hash"], got["prev_hash"]) == (bytes(hash_).hex(), bytes(prev).hex())
        # the export itself was recorded before any data left, with its range
        mine = [e for e in lines if e["seq"] > mark]
        assert mine[0]["action"] == "audit.exported" and mine[0]["actor"] == "carol"
        assert mine[0]["detail"] == {"format": "jsonl", "since": f"{day}T00:00:00.000+00:00",
                                     "until": dt.datetime.fromtimestamp(
                                         (since + DAY_US) / 1e6, dt.UTC).isoformat(
                                         timespec="milliseconds")}

        # a past range: its own events only, each boundary exact
        status, body, _ = await fetch(carol, "/audit/export.jsonl?from=2024-03-11&to=2024-03-11")
        old = [json.loads(line) for line in body.decode().splitlines()]
        assert status == 200 and {e["session_id"] for e in old} == {
            world.seeded["bob-day-11-late"]}
        status, body, _ = await fetch(carol, "/audit/export.jsonl?from=2024-03-10&to=2024-03-12")
        old = [json.loads(line) for line in body.decode().splitlines()]
        assert {e["session_id"] for e in old} == {world.seeded[m] for m in OLD_DAYS}
        assert [e["seq"] for e in old] == sorted(e["seq"] for e in old)
        status, body, _ = await fetch(carol, "/audit/export.jsonl?from=2001-01-01&to=2001-01-31")
        assert status == 200 and body == b""
    finally:
        await carol.close()


BAD_RANGES = [
    ("from=2026-13-01&to=2026-13-02", "dates are written YYYY-MM-DD"),
    ("from=yesterday&to=today", "dates are written YYYY-MM-DD"),
    ("from=2024-03-10T00:00&to=2024-03-11", "dates are written YYYY-MM-DD"),
    ("from=2024-03-10&to=2024-02-30", "dates are written YYYY-MM-DD"),
    ("from=2024-03-12&to=2024-03-10", "the range ends before it starts"),
    ("from=2024-03-12", "give a date range: from=YYYY-MM-DD&to=YYYY-MM-DD"),
    ("", "give a date range: from=YYYY-MM-DD&to=YYYY-MM-DD"),
]


async def test_range_exports_refuse_bad_dates_with_a_clear_message(world):
    """A mistyped, impossible or backwards date range is a 400 that says what is wrong,
    for the JSONL export and the bundle alike, and nothing is exported (or recorded as
    exported)."""
    carol = await signed_in(world.broker, "carol")
    try:
        before = reads_audited(world.broker)
        for query, message in BAD_RANGES:
            for path in ("/audit/export.jsonl", "/audit/bundle.zip"):
                status, body, headers = await fetch(carol, f"{path}?{query}")
                assert status == 400 and body.decode() == message, (path, query, status,
                                                                     body[:200])
                assert "Content-Disposition" not in headers
        assert reads_audited(world.broker) == before
    finally:
        await carol.close()


# --- search filters and pages ---------------------------------------------------------------


async def test_search_filters_find_exactly_the_matching_sessions(world):
    """Each filter of the Audit search -- technician (name or display name), customer
    machine, date range, outcome and text in event details -- finds exactly the matching
    sessions; % and _ typed into a filter match themselves, not "anything"."""
    s = world.seeded
    bobs = {s[m] for m in (*OUTCOME_ROWS, *OLD_DAYS)}
    erins = set(world.erin_newest_first)
    carol = await signed_in(world.broker, "carol")

    async def found(query: str) -> set[str]:
        status, page = await carol.page("/audit?" + query)
        assert status == 200, (query, page[:300])
        ids = listed(page)
        assert result_count(page) == len(ids), query  # every expected set fits one page
        if not ids:
            assert "No sessions match." in page
        return set(ids)

    try:
        assert await found("technician=bob") == bobs
        assert await found("technician=Bob+Sto") == bobs  # the display name, in part
        alices = {sid for (sid,) in db(world.broker, "SELECT s.id FROM sessions s JOIN users u"
                                                    " ON u.id = s.technician_id"
                                                    " WHERE u.name = 'alice'")}
        assert world.sid in alices and not alices & (bobs | erins)
        assert await found("technician=ALICE") == alices
        assert await found("technician=%25") == set()
        assert await found("technician=b_b") == set()
        assert await found("machine=bob-") == bobs
        assert await found("machine=page-host-1") == {s[f"page-host-1{i}"] for i in range(10)}
        assert await found("machine=%25") == {world.sid}  # only the machine with a real %
        assert await found("machine=_") == {world.sid}
        assert await found("machine=lit_100%25_h") == {world.sid}
        assert await found("machine=lit%25host") == set()
        assert await found("technician=erin&machine=page-host-2") == {
            s[f"page-host-2{i}"] for i in range(10)}
        # dates are whole UTC days, both ends included
        assert await found("from=2024-03-11&to=2024-03-11") == {s["bob-day-11-late"]}
        assert await found("from=2024-03-12&to=2024-03-12") == {s["bob-day-12-start"]}
        assert await found("from=2024-03-10&to=2024-03-12") == {s[m] for m in OLD_DAYS}
        assert await found("to=2024-03-10") == {s["bob-day-10"]}
        assert await found(f"technician=bob&from={today()}") == {s[m] for m in OUTCOME_ROWS}
        # outcomes
        assert await found("technician=bob&outcome=completed") == {
            s["bob-completed"], *(s[m] for m in OLD_DAYS)}
        for outcome, machine in (("refused", "bob-refused"), ("unanswered", "bob-unanswered"),
                                 ("cancelled", "bob-cancelled")):
            assert await found(f"outcome={outcome}") == {s[machine]}, outcome
        assert await found("technician=bob&outcome=active") == set()
        assert world.sid in await found("technician=alice&outcome=completed")
        # text in event details (the customer's machine is in the consent event)
        assert await found("q=lit_100%25_h") == {world.sid}
        assert await found("q=100%25") == {world.sid}
        assert await found("q=lit%25host") == set()
        assert await found("q=l_t") == set()
        assert await found("q=page-host-0") == {s[f"page-host-0{i}"] for i in range(10)}
        assert await found("q=page-host-0&machine=page-host-05") == {s["page-host-05"]}
        # unknown outcomes and dates are errors, not "no results"
        for query, message in (("outcome=hacked", "unknown outcome"),
                               ("from=03/10/2024", "dates are written YYYY-MM-DD")):
            status, body, _ = await fetch(carol, "/audit?" + query)
            assert status == 400 and body.decode() == message, query
    finally:
        await carol.close()


async def test_results_come_in_pages_of_25(world):
    """Thirty sessions of one technician: page 1 shows the 25 newest and "30 sessions",
    page 2 the other 5, a page past the end shows none, and a page that is not a number
    is a 400."""
    erin = world.erin_newest_first
    carol = await signed_in(world.broker, "carol")
    try:
        status, page = await carol.page("/audit?technician=erin")
        assert status == 200 and listed(page) == erin[:PAGE_SIZE]
        assert result_count(page) == ERIN_SESSIONS and "Page 1 of 2" in page
        assert 'rel="next" href="/audit?technician=erin&amp;page=2"' in page
        status, page = await carol.page("/audit?technician=erin&page=2")
        assert listed(page) == erin[PAGE_SIZE:] and len(erin[PAGE_SIZE:]) == 5
        assert result_count(page) == ERIN_SESSIONS and "Page 2 of 2" in page
        assert 'rel="prev" href="/audit?technician=erin&amp;page=1"' in page
        assert 'rel="next"' not in page
        status, page = await carol.page("/audit?technician=erin&page=3")
        assert status == 200 and listed(page) == [] and "No sessions match." in page
        assert result_count(page) == ERIN_SESSIONS
        # an unfiltered search pages the same way, newest first
        newest = [sid for (sid,) in db(world.broker, "SELECT id FROM sessions"
                                                     " ORDER BY created_us DESC, id")]
        for n in (1, 2):
            status, page = await carol.page(f"/audit?page={n}")
            assert listed(page) == newest[(n - 1) * PAGE_SIZE:n * PAGE_SIZE], n
        for bad in ("two", "1.5", "%201e3", "0x2"):
            status, body, _ = await fetch(carol, f"/audit?technician=erin&page={bad}")
            assert status == 400 and body == b"page must be a number", bad
    finally:
        await carol.close()
