"""Untrusted text in the audit log is kept as data and shown escaped everywhere.

Issue requirement: everything the log records about untrusted input (machine
names, user names, user agents; later chat text and file names) is stored as
data and shown escaped. One real session for the whole module: a real client
whose machine name, user name and OS carry ``<script>``, ANSI escapes, CR/LF,
bidi overrides and spreadsheet formulas (set through ``sitecustomize``, the
way the client would read them from a hostile host), redeemed by a technician
whose user name, display name and organisation are just as hostile. Then the
console pages, the CSV and JSONL exports and the broker's own log are checked
as an auditor would look at them.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import datetime as dt
import io
import json
import os
import re
import sqlite3
import ssl
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import PASSWORD, make_broker
from tests.helpers import Broker, Customer, T, Technician
from tether.protocol.sanitize import clean_text

pytestmark = pytest.mark.asyncio(loop_scope="module")

ESC, BIDI = "\x1b[31m", "\u202e"
#: what the hostile client reports (the broker keeps 128 / 64 / 128 characters of them)
MACHINE = f'=HYPERLINK("http://x")<script>m()</script>{ESC}\r\nm{BIDI}1'
CUSTOMER_USER = f"@SUM(1)<script>u()</script>{ESC}\r\n{BIDI}u"
OS_NAME = f"+1<script>os()</script>{ESC}\r{BIDI}os"
#: the technician, as an admin typed them into ``tether-broker user add``
TECH = '=HYPERLINK("http://x")'
DISPLAY = f"<script>dn()</script>{ESC}Mallory\r\nIT{BIDI}TI"
ORG = f"-1<script>org()</script>{ESC}\r\n{BIDI}Org"
#: people whose user names a spreadsheet would run: auditors and an admin
AUDITOR, AUDITOR2, ADMIN = "@SUM(1)", "-1", "+1"
USER_AGENT = f"<script>ua()</script>{BIDI}TetherTestUA/1.0"
#: a session id an auditor is refused on (sent URL-encoded), and the path the broker decodes
HOSTILE_ID = "<script>p()</script>\x1b[2J\r\nX-Forged: 1\u202e"
HOSTILE_PATH = f"/api/sessions/{HOSTILE_ID}/end"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def customer_as(broker: Broker, tmp: Path, *, machine: str | None = None,
                user: str | None = None, os_name: str | None = None) -> Customer:
    """A real ``tether-client`` that reports the given machine name, user name and OS.

    The client reads them from ``socket.gethostname()``, ``getpass.getuser()`` and
    ``platform``; a ``sitecustomize`` on its PYTHONPATH makes those return what a
    hostile (or just oddly named) computer would.
    """
    site = tmp / "site"
    site.mkdir(parents=True, exist_ok=True)
    lines = ["import getpass, platform, socket"]
    if machine is not None:
        lines.append(f"socket.gethostname = lambda: {machine!r}")
    if user is not None:
        lines.append(f"getpass.getuser = lambda: {user!r}")
    if os_name is not None:
        lines.append(f"platform.platform = lambda *a, **k: {os_name!r}")
        lines.append(f"platform.system = lambda: {os_name!r}")
    (site / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(site),
                                                              os.environ.get("PYTHONPATH")])))
        return Customer(broker, "--consent-timeout", "5", tmp=tmp)


def add_user(broker: Broker, name: str, role: str, display: str, org: str) -> None:
    broker.add_user(name, PASSWORD, role, display, org)


@dataclasses.dataclass
class World:
    broker: Broker
    sid: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp = tmp_path_factory.mktemp("audit-escaping")
    broker = make_broker(tmp / "data", "--pair-timeout", "5", "--consent-wait", "8")
    add_user(broker, TECH, "technician", DISPLAY, ORG)
    add_user(broker, AUDITOR, "auditor", "Audrey Auditor", "Acme Audit")
    add_user(broker, AUDITOR2, "auditor", "Second Auditor", "Acme Audit")
    add_user(broker, ADMIN, "admin", "Adam Admin", "Acme IT")
    broker.start()
    tech = Technician(broker)
    customer = customer_as(broker, tmp / "customer", machine=MACHINE, user=CUSTOMER_USER,
                           os_name=OS_NAME)
    try:
        assert (await tech.login(TECH, PASSWORD))[0] == 200
        sid = await tech.session_id(customer.code())
        customer.accept_session()
        await tech.wait_for(sid, lambda s: s["state"] == "active", "session consent")
        status, _ = await tech.end(sid)
        assert status == 200 and customer.wait_exit() == 0
        # an auditor refused on a hostile path: the path is recorded (and logged) as data
        auditor = await signed_in(broker, AUDITOR)
        try:
            status, body = await auditor.api(
                "POST", f"/api/sessions/{urllib.parse.quote(HOSTILE_ID, safe='')}/end")
            assert status == 403, body
        finally:
            await auditor.close()
        yield World(broker, sid)
    finally:
        customer.close()
        await tech.close()
        broker.stop()


# --- helpers ---------------------------------------------------------------------------


async def signed_in(broker: Broker, name: str) -> Technician:
    client = Technician(broker)
    await client.sign_in_once(name, PASSWORD)
    return client


async def fetch(client: Technician, path: str) -> tuple[int, bytes]:
    async with client.http.get(client.url + path, allow_redirects=False) as r:
        return r.status, await r.read()


def escaped(text: str) -> str:
    """``text`` as Jinja2's autoescape writes it."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&#34;").replace("'", "&#39;"))


BIDI_CONTROLS = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def html_problems(page: str, where: str) -> list[str]:
    """Markup, terminal escapes, CRs and bidi overrides from the data, each with context."""
    # the console's own <script> tags all have attributes; a bare one came from data
    bad = f"[\x1b\r{BIDI_CONTROLS}]"
    return [f"{where}: ...{page[max(0, m.start() - 40):m.start()]!r} + {m.group()!r}"
            for m in re.finditer(f"<script>|[^<>]*{bad}[^<>]*", page)]  # once per text node


def assert_inert_html(page: str, where: str) -> None:
    found = html_problems(page, where)
    assert not found, "raw <script>, ESC, CR or bidi control in the page:\n" + "\n".join(found)


async def raw_https(broker: Broker, request: bytes) -> tuple[int, str]:
    """Send bytes exactly as given (aiohttp refuses to send some of these headers)."""
    host, port = broker.url.removeprefix("https://").rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=str(broker.ca))
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx,
                                                   server_hostname=host)
    try:
        writer.write(request)
        await writer.drain()
        head = (await asyncio.wait_for(reader.read(), T)).decode("latin-1")
    finally:
        writer.close()
    return int(head.split(" ", 2)[1]), head


def log_entries(broker: Broker) -> list[dict[str, Any]]:
    text = broker.log.read_bytes().decode("utf-8")
    assert "\x1b" not in text, "raw ESC in the broker log"
    assert "\u202e" not in text, "raw bidi override in the broker log"
    assert "\r" not in text, "raw CR in the broker log (a forged line?)"
    entries = []
    for n, line in enumerate(text.split("\n")[:-1], 1):
        entry = json.loads(line)  # every line one JSON object: no line was split
        assert isinstance(entry, dict) and {"ts", "level", "msg"} <= entry.keys(), (n, line)
        entries.append(entry)
    assert text.endswith("\n")
    return entries


def session_detail(broker: Broker, sid: str) -> dict[str, Any]:
    con = sqlite3.connect(broker.data / "tether.db")
    try:
        rows = con.execute("SELECT action, detail FROM audit_events WHERE session_id = ?"
                           " ORDER BY seq", (sid,)).fetchall()
    finally:
        con.close()
    return {action: json.loads(detail) for action, detail in rows}


# --- the console pages -------------------------------------------------------------------


async def test_the_customers_machine_user_and_os_are_shown_escaped(world):
    """The machine name, user name and OS the client sent are stored as data (cleaned of
    terminal escapes, line breaks and bidi overrides) and appear on the Audit list and
    the session page only as escaped text: ``&lt;script&gt;``, never a live tag."""
    details = session_detail(world.broker, world.sid)["session.consented"]
    assert details == {"machine": '=HYPERLINK("http://x")<script>m()</script>m1',
                       "user": "@SUM(1)<script>u()</script>u",
                       "os": "+1<script>os()</script>os"}
    auditor = await signed_in(world.broker, AUDITOR)
    try:
        for path in ("/audit", f"/audit?machine={urllib.parse.quote('<script>m()')}",
                     f"/audit?q={urllib.parse.quote('<script>u()')}",
                     f"/audit/sessions/{world.sid}"):
            status, page = await auditor.page(path)
            assert status == 200 and world.sid in page, path
            for shown in (details["machine"], details["user"]):
                assert escaped(shown) in page, (path, shown)
            assert "&lt;script&gt;m()&lt;/script&gt;" in page
            assert "<script>m()" not in page and "<script>u()" not in page, path
            assert "<script>os()" not in page, path
        assert escaped(details["os"]) in page  # the session page shows the OS too
    finally:
        await auditor.close()


@pytest.mark.parametrize("viewer", ["auditor", "technician"])
async def test_the_technicians_names_are_shown_escaped(world, viewer):
    """The technician's user name, display name and organisation (set by an admin, and
    copied into the session's end reason) are shown escaped on the Audit pages -- to an
    auditor and to the technician himself (whose name is also in the page header) --
    with no raw ESC, CR or bidi override that could reorder or disguise the text."""
    who = await signed_in(world.broker, AUDITOR if viewer == "auditor" else TECH)
    paths = ["/audit", f"/audit?technician={urllib.parse.quote(TECH)}",
             f"/audit/sessions/{world.sid}"]
    if viewer == "technician":  # his own console pages name him too
        paths += ["/dashboard", f"/sessions/{world.sid}"]
    problems: list[str] = []
    try:
        for path in paths:
            status, page = await who.page(path)
            assert status == 200 and world.sid in page, path
            assert "&lt;script&gt;dn()&lt;/script&gt;" in page, path
            problems += html_problems(page, f"{viewer} {path}")
            if path.startswith("/audit/sessions/"):
                assert escaped(TECH) in page  # the user name, next to the display name
                assert "&lt;script&gt;org()&lt;/script&gt;" in page  # and the organisation
    finally:
        await who.close()
    assert not problems, "raw <script>, ESC, CR or bidi control:\n" + "\n".join(problems)


# --- exports ------------------------------------------------------------------------------


async def test_csv_export_neutralises_spreadsheet_formulas(world):
    """In the session's CSV export every cell a spreadsheet would run as a formula
    (starting with = + - @, tab or CR) -- here the technician's user name -- is
    prefixed with an apostrophe; multi-line values stay inside their cell, so the export
    has exactly one row per event."""
    broker = world.broker
    auditor = await signed_in(broker, AUDITOR)
    try:
        assert (await auditor.page(f"/audit/sessions/{world.sid}"))[0] == 200
        status, body = await fetch(auditor, f"/audit/sessions/{world.sid}/events.csv")
        assert status == 200
        rows = list(csv.reader(io.StringIO(body.decode("utf-8"), newline="")))
        status, jsonl = await fetch(auditor, f"/audit/sessions/{world.sid}/events.jsonl")
        events = [json.loads(line) for line in jsonl.decode().splitlines()]
    finally:
        await auditor.close()
    header, rows = rows[0], rows[1:]
    assert header == ["seq", "time", "session_id", "actor", "action", "ip", "detail"]
    assert len(rows) == len(events)  # auditors' looks are not part of the session's events
    for row in rows:
        assert len(row) == len(header), row
        for cell in row:
            assert not cell.startswith(FORMULA_START), f"formula cell {cell!r} in {row}"
    actors = {row[3] for row in rows}
    assert "'" + TECH in actors
    by_action = {row[4]: row for row in rows}
    consented = json.loads(by_action["session.consented"][6])
    assert consented["machine"].startswith('=HYPERLINK("http://x")')  # inside JSON: inert
    assert "ended by <script>dn()</script>" in json.loads(by_action["session.ended"][6])[
        "reason"]


async def test_jsonl_exports_are_one_valid_json_object_per_line(world):
    """The session's JSONL export and the SIEM export give one JSON object per line,
    with every control and bidi character escaped -- also for a hostile request path
    that the log recorded verbatim, as data, when an auditor was refused."""
    broker, day = world.broker, dt.datetime.now(dt.UTC).date().isoformat()
    auditor = await signed_in(broker, AUDITOR)
    try:
        for path in (f"/audit/sessions/{world.sid}/events.jsonl",
                     f"/audit/export.jsonl?from={day}&to={day}"):
            status, raw = await fetch(auditor, path)
            assert status == 200, path
            assert raw.isascii() and b"\x1b" not in raw and b"\r" not in raw, path
            lines = raw.decode().split("\n")
            assert lines[-1] == "", path
            events = [json.loads(line) for line in lines[:-1]]
            assert all(isinstance(e, dict) and "seq" in e for e in events), path
        denied = [e for e in events if e["action"] == "access.denied"]
        assert [(e["actor"], e["detail"]["path"]) for e in denied] == [(AUDITOR, HOSTILE_PATH)]
        ended = next(e for e in events if e["action"] == "session.ended")
        # stored as data, cleaned of controls and bidi when the account was made
        assert ended["detail"]["reason"] == f"ended by {clean_text(DISPLAY, 80)}"
    finally:
        await auditor.close()


# --- sign-in user agents ---------------------------------------------------------------------


async def sign_in_raw(broker: Broker, name: str, user_agent: bytes,
                      otp: str | None = None) -> tuple[int, str]:
    """Sign in with a User-Agent sent byte for byte; returns the status and headers."""
    client = Technician(broker)
    try:
        await client.page("/login")
        pre = next(c.value for c in client.http.cookie_jar if c.key == "__Host-tether-pre")
        csrf = client.csrf
    finally:
        await client.close()
    body = urllib.parse.urlencode({"username": name, "password": PASSWORD,
                                   "otp": otp or await broker.totp_code(name),
                                   "csrf": csrf}).encode()
    host = broker.url.removeprefix("https://")
    request = (f"POST /login HTTP/1.1\r\nHost: {host}\r\nOrigin: {broker.url}\r\n"
               f"Cookie: __Host-tether-pre={pre}\r\n"
               "Content-Type: application/x-www-form-urlencoded\r\n"
               f"Content-Length: {len(body)}\r\nConnection: close\r\n").encode()
    return await raw_https(broker, request + b"User-Agent: " + user_agent + b"\r\n\r\n" + body)


async def test_a_sign_in_records_its_user_agent_as_escaped_data(world):
    """A sign-in whose browser sends a User-Agent with markup and a bidi override is
    recorded with that user agent as data in ``user.signed_in``; the SIEM export carries
    it escaped. A User-Agent with a raw ESC or CR is refused by the HTTP parser (400)
    and never reaches the log."""
    broker, day = world.broker, dt.datetime.now(dt.UTC).date().isoformat()
    for bad in (b"<script>x()</script>\x1b[2J", b"Mozilla\rX-Forged: 1"):
        status, _ = await sign_in_raw(broker, AUDITOR2, bad, otp="000000")  # never checked
        assert status == 400, bad  # the HTTP parser refuses control characters in headers
    status, head = await sign_in_raw(broker, AUDITOR2, USER_AGENT.encode())
    assert status == 303 and "\r\nLocation: /dashboard\r\n" in head, head
    auditor = await signed_in(broker, AUDITOR)
    try:
        status, raw = await fetch(auditor, f"/audit/export.jsonl?from={day}&to={day}")
        assert status == 200 and raw.isascii()
    finally:
        await auditor.close()
    sign_ins = [e for e in map(json.loads, raw.decode().splitlines())
                if e["action"] == "user.signed_in" and e["actor"] == AUDITOR2]
    assert sign_ins, "no user.signed_in event"
    recorded = json.dumps(sign_ins[-1]["detail"], ensure_ascii=False)
    assert "TetherTestUA/1.0" in recorded, (
        f"user.signed_in does not record the User-Agent: detail={sign_ins[-1]['detail']}")
    assert "<script>ua()</script>" in recorded  # as data, not stripped of meaning


# --- the broker's own log ----------------------------------------------------------------------


async def test_the_broker_log_stays_one_json_object_per_line(world):
    """After all of the above, the broker's log is still one JSON object per line: no
    CR/LF from the data split a line or forged one, and no raw ESC or bidi override
    reached it; the hostile request path is in the access log, escaped."""
    entries = log_entries(world.broker)
    paths = [e.get("path", "") for e in entries if e.get("logger") == "tether.access"]
    assert HOSTILE_PATH in paths  # decoded and logged, but as one escaped JSON string
