"""Attacks on the web console: CSRF, IDOR, admin URL tricks, log injection, revocation.

One broker for the module (``--fail-window 1``, so failure summaries reach the audit
log within a second). Customers are hand-spoken control connections
(:class:`FakeAgent`): they really connect, consent and carry a shell channel's bytes,
so sessions, channels and recordings are the broker's own.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import secrets
import socket
import sqlite3
import ssl
import time
from typing import Any

import aiohttp
import pytest
from websockets.exceptions import ConnectionClosed

from tests.helpers import Broker, T, Viewer, run_cli
from tests.security.conftest import Site
from tests.security.tools import (
    PASSWORD,
    Browser,
    FakeAgent,
    browser,
    port_of,
    raw_http,
    session_cookie,
    shell_session,
    totp_now,
    wss,
)
from tether.broker.app import make_app
from tether.broker.config import Config
from tether.broker.keys import PASSWORDS

ADMIN_PAGE = 'id="accounts-heading"'


@pytest.fixture(scope="module")
def site(start_broker) -> Site:
    return start_broker("--fail-window", "1", "--pair-timeout", "5", "--consent-wait", "8",
                        technician=8, admin=4, auditor=3)


@pytest.fixture
def broker(site: Site) -> Broker:
    return site.broker


def db(broker: Broker, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"file:{broker.data / 'tether.db'}?mode=ro", uri=True)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


async def get(b: Browser, path: str) -> tuple[int, bytes]:
    async with b.http.get(b.url + path, allow_redirects=False) as r:
        return r.status, await r.read()


async def open_viewer(owner: Browser, sid: str, cid: str) -> Viewer:
    viewer = await owner.attach(sid, cid)
    await owner.wait_for(sid, lambda s: s["channels"][0]["state"] == "open", "channel open")
    return viewer


# --- CSRF -----------------------------------------------------------------------------------


async def test_every_state_changing_route_refuses_a_missing_or_wrong_csrf_token(site, broker):
    """A page on another site makes the signed-in admin's browser post to every route that
    changes something -- sign-out, connect, open/attach/end a channel or session, add a
    user, disable / enable / re-role / re-key / clear delays of one -- with no token, a
    made-up token, a real token of another login, the right token but a foreign or
    "null" Origin, or the token in the wrong place. Every try is a 403 and nothing
    changes; the same requests with the right token then work (so the 403 was the
    CSRF check, not something else)."""
    admin_name, = site.take("admin")
    tech_name, = site.take("technician")
    admin = await browser(broker, admin_name, "127.0.20.1")
    other = await browser(broker, tech_name, "127.0.20.2")  # a login with its own token
    agent = await FakeAgent(broker).connect()
    try:
        sid, cid, _ = await shell_session(admin, agent)  # an admin may connect too
        right = admin.csrf
        form_routes = [("/logout", {}), ("/sessions", {"code": "123 456 780"}),
                       ("/admin/users", {"name": "csrf-made", "role": "admin",
                                         "password": "p" * 12})]
        form_routes += [(f"/admin/users/{tech_name}/{action}", {"role": "admin"})
                        for action in ("disable", "enable", "role", "totp", "clear-delays")]
        api_routes = [(f"/api/sessions/{sid}/channels", {"kind": "terminal"}),
                      (f"/api/sessions/{sid}/channels/{cid}/attach", None),
                      (f"/api/sessions/{sid}/end", None)]
        bad_tokens: list[tuple[str | None, dict[str, str]]] = [
            (None, {}), ("", {}), ("0" * 64, {}), (secrets.token_hex(32), {}),
            (other.csrf, {}), (right.upper(), {}), (right[:-1], {}),
            (right, {"Origin": "https://evil.example"}), (right, {"Origin": "null"}),
            (right, {"Origin": broker.url.replace("https", "http")}),
        ]
        for path, fields in form_routes:
            for token, headers in bad_tokens:
                data = dict(fields) | ({} if token is None else {"csrf": token})
                status, _ = await admin.post(path, data, headers=headers)
                assert status == 403, (path, token, headers, status)
            status, _ = await admin.post(path + f"?csrf={right}", dict(fields))
            assert status == 403, (path, "token in the query string")
        for path, body in api_routes:
            for token, headers in bad_tokens:
                hdrs = dict(headers) | ({} if token is None else {"X-CSRF-Token": token})
                async with admin.http.post(admin.url + path, json=body, headers=hdrs) as r:
                    assert r.status == 403, (path, token, headers, r.status)
            async with admin.http.post(admin.url + path, data={"csrf": right}) as r:
                assert r.status == 403, (path, "token in a form field instead of the header")
        # nothing changed
        state = await admin.state(sid)
        assert state["state"] == "active" and len(state["channels"]) == 1
        assert state["channels"][0]["state"] == "pairing"
        assert not db(broker, "SELECT 1 FROM users WHERE name = 'csrf-made'")
        assert db(broker, "SELECT role, disabled FROM users WHERE name = ?", tech_name) == [
            ("technician", 0)]
        assert (await other.api("GET", "/api/sessions"))[0] == 200  # not revoked
        # the same requests with the right token work
        status, _ = await admin.post("/sessions", {"code": "123 456 780", "csrf": right})
        assert status == 400  # a code that is not live: the request got through
        status, _ = await admin.post(f"/admin/users/{tech_name}/clear-delays", {"csrf": right})
        assert status == 200
        status, body = await admin.api("POST", f"/api/sessions/{sid}/channels/{cid}/attach")
        assert status == 200 and body["secret"]
        status, body = await admin.api("POST", f"/api/sessions/{sid}/end")
        assert status == 200 and body["state"] == "ended"
        status, _ = await admin.post("/logout", {"csrf": right})
        assert status == 303
        assert (await admin.api("GET", "/api/sessions"))[0] == 401
    finally:
        await agent.close()
        await admin.close()
        await other.close()


async def test_the_sign_in_form_refuses_a_missing_or_wrong_csrf_token(site, broker):
    """Login CSRF (signing the victim in to the attacker's account): the sign-in form
    with the right password and authentication code but no token, a made-up one,
    another visitor's, or a foreign Origin, is a 403 and signs nobody in (the
    authentication code is not even used up); with its own token it works."""
    name, = site.take("technician")
    victim = Browser(broker, "127.0.21.1")
    stranger = Browser(broker, "127.0.21.2")
    try:
        await stranger.page("/login")
        await victim.page("/login")
        otp = totp_now(broker, name)
        fields = {"username": name, "password": PASSWORD, "otp": otp}
        for token, headers in ((None, {}), ("0" * 64, {}), (stranger.csrf, {}),
                               (victim.csrf, {"Origin": "https://evil.example"})):
            data = fields | ({} if token is None else {"csrf": token})
            status, _ = await victim.post("/login", data, headers=headers)
            assert status == 403, (token, headers)
            assert "__Host-tether" not in victim.cookies
        status, _ = await victim.post("/login", fields | {"csrf": victim.csrf})
        assert status == 303 and session_cookie(victim)
    finally:
        await victim.close()
        await stranger.close()


async def test_state_changing_routes_do_not_answer_get(site, broker):
    """A link or an <img> (a GET) to a state-changing URL does nothing: 405 for each."""
    name, = site.take("admin")
    admin = await browser(broker, name, "127.0.22.1")
    try:
        for path in ("/logout", "/sessions", "/api/sessions/s_x/end",
                     "/api/sessions/s_x/channels", "/api/sessions/s_x/channels/c_x/attach",
                     "/admin/users", f"/admin/users/{name}/disable"):
            status, _ = await get(admin, path)
            assert status == 405, path
        assert (await admin.api("GET", "/api/sessions"))[0] == 200
    finally:
        await admin.close()


# --- IDOR -------------------------------------------------------------------------------------


async def test_another_technicians_session_recording_and_exports_stay_out_of_reach(site,
                                                                                  broker):
    """A second technician knows (or guesses) the ids of a colleague's session and its
    recorded shell. While it is live, they cannot see it, end it, open or attach a
    channel, follow its live updates, or use a viewer secret stolen from the owner;
    after it ends, its record, recording (play and download), event exports and bundle
    are "not found" to them, and range exports are for auditors only. Path tricks on the
    recording id give nothing, even to the owner. The owner and an auditor read it all
    (so the URLs were right)."""
    owner_name, other_name = site.take("technician", 2)
    auditor_name, = site.take("auditor")
    owner = await browser(broker, owner_name, "127.0.23.1")
    other = await browser(broker, other_name, "127.0.23.2")
    agent = await FakeAgent(broker).connect()
    live: aiohttp.ClientWebSocketResponse | None = None
    try:
        sid, cid, secret = await shell_session(owner, agent)
        relay = await agent.relay(secret)
        viewer = await open_viewer(owner, sid, cid)
        await relay.send(b"idor-canary-output\r\n")
        await viewer.expect("idor-canary-output")

        # while live
        for path in (f"/sessions/{sid}", f"/api/sessions/{sid}", f"/sessions/{sid.upper()}",
                     f"/api/sessions/{sid}%00", f"/api/sessions/{sid}/"):
            status, body = await get(other, path)
            assert status == 404 and b"idor-canary" not in body and owner_name.encode() not in \
                body, path
        for path, payload in ((f"/api/sessions/{sid}/end", None),
                              (f"/api/sessions/{sid}/channels", {"kind": "terminal"}),
                              (f"/api/sessions/{sid}/channels/{cid}/attach", None)):
            status, body = await other.api("POST", path, payload)
            assert status == 404, (path, status, body)
        status, body = await other.api("GET", "/api/sessions")
        assert status == 200 and sid not in json.dumps(body)
        live = await other.http.ws_connect(wss(broker, f"/ws/live?session={sid}"))
        await owner.api("POST", f"/api/sessions/{sid}/channels", {"kind": "terminal"})
        await agent.next("channel_request")  # the session changed: updates went out
        with pytest.raises(TimeoutError):
            msg = await live.receive(timeout=0.5)
            raise AssertionError(f"another technician got an update: {msg.data!r}")

        # a viewer secret stolen from the owner
        await viewer.ws.close()
        await owner.wait_for(sid, lambda s: s["channels"][0]["state"] == "detached", "detach")
        status, body = await owner.api("POST", f"/api/sessions/{sid}/channels/{cid}/attach")
        assert status == 200
        stolen = await other.http.ws_connect(wss(broker, "/ws/relay/viewer"))
        await stolen.send_str(json.dumps({"secret": body["secret"]}))
        msg = await stolen.receive(timeout=T)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4403, (msg.type, msg.data)
        again = await open_viewer(owner, sid, cid)
        assert b"idor-canary-output" in (await again.expect("idor-canary-output")).group(0)
        await again.ws.close()
        status, _ = await owner.end(sid)
        assert status == 200

        # after the end: the record, recording and exports
        day = dt.datetime.now(dt.UTC).date().isoformat()
        session_urls = [f"/audit/sessions/{sid}", f"/api/audit/sessions/{sid}/recordings/{cid}",
                        f"/audit/sessions/{sid}/recordings/{cid}.cast",
                        f"/audit/sessions/{sid}/events.jsonl",
                        f"/audit/sessions/{sid}/events.csv", f"/audit/sessions/{sid}/bundle.zip"]
        for path in (*session_urls, f"/sessions/{sid}", f"/api/sessions/{sid}"):
            status, body = await get(other, path)
            assert status == 404 and b"idor-canary" not in body, (path, status)
        for path in (f"/audit/export.jsonl?from={day}&to={day}",
                     f"/audit/bundle.zip?from={day}&to={day}"):
            status, body = await get(other, path)
            assert status == 403 and b"idor-canary" not in body, (path, status)
        auditor = await browser(broker, auditor_name, "127.0.23.3")
        try:
            for who in (owner, auditor):
                for path in session_urls:
                    status, body = await get(who, path)
                    assert status == 200, (who.ip, path, status)
                status, body = await get(who, session_urls[1])
                assert b"idor-canary-output" in body
        finally:
            await auditor.close()
        cookie = f"Cookie: __Host-tether={session_cookie(owner)}"
        for trick in ("..%2F..%2Ftether.db", "%2e%2e%2f%2e%2e%2fcerts%2fbroker-key.pem",
                      "..%252F..%252Ftether.db", f"{cid}%2F..%2F..%2F..%2Ftether.db",
                      f"{cid}%00"):
            for path in (f"/api/audit/sessions/{sid}/recordings/{trick}",
                         f"/audit/sessions/{sid}/recordings/{trick}.cast",
                         f"/audit/sessions/{sid}/recordings/../../../tether.db"):
                status, _, body = await raw_http(broker, f"GET {path} HTTP/1.1\r\nHost: x\r\n"
                                                         f"{cookie}", ip=owner.ip)
                assert status in (400, 404), (path, status)
                assert b"SQLite format" not in body and b"PRIVATE KEY" not in body
    finally:
        if live is not None:
            await live.close()
        await agent.close()
        await owner.close()
        await other.close()


async def test_static_files_do_not_reach_outside_their_folder(broker):
    """Path traversal through /static/ in every spelling: never the database, a key or
    the CA, signed in or not."""
    for path in ("/static/../tether.db", "/static/%2e%2e/tether.db",
                 "/static/..%2f..%2ftether.db", "/static/%2e%2e%2f%2e%2e%2fcerts%2fca-key.pem",
                 "/static/..%5c..%5ctether.db", "/static//etc/passwd", "/static/%252e%252e/x",
                 "//static/../../tether.db", "/static/.%2e/.%2e/certs/broker-key.pem"):
        status, _, body = await raw_http(broker, f"GET {path} HTTP/1.1\r\nHost: x")
        assert status in (400, 403, 404), (path, status)
        assert b"SQLite format" not in body and b"PRIVATE KEY" not in body
        assert b"root:x:" not in body


# --- caching and headers ----------------------------------------------------------------------


SECURITY_HEADERS = ("Content-Security-Policy", "Strict-Transport-Security",
                    "X-Content-Type-Options", "X-Frame-Options", "Referrer-Policy")


def broker_routes(broker: Broker) -> list[tuple[str, str]]:
    """(method, path template) of every route of the broker, from its own router."""
    app = make_app(Config(data=broker.data))
    try:
        return sorted({(r.method, r.resource.canonical) for r in app.router.routes()
                       if r.resource is not None and r.method != "HEAD"})
    finally:
        app[PASSWORDS].close()


async def test_no_signed_in_response_stays_in_the_browser_cache(site, broker):
    """After sign-out, the browser's disk cache must hold nothing of the console: the
    audit list and records name customers' machines, users and addresses. An admin
    signed in over HTTPS asks for every route of the broker (taken from its router,
    with a real session, channel and recording in the path) -- pages, JSON, recordings,
    the streamed exports (events JSONL, bundles), WebSocket endpoints, form posts --
    and every answer says ``Cache-Control: no-store`` and carries the security headers,
    also the streamed ones, whose head goes out before the handler returns. Only the
    public static files may be cached."""
    admin_name, = site.take("admin")
    admin = await browser(broker, admin_name, "127.0.27.1")
    agent = await FakeAgent(broker).connect()
    try:
        sid, cid, secret = await shell_session(admin, agent)
        relay = await agent.relay(secret)
        viewer = await open_viewer(admin, sid, cid)
        await relay.send(b"cache-canary\r\n")
        await viewer.expect("cache-canary")
        await viewer.ws.close()
        assert (await admin.end(sid))[0] == 200
        day = dt.datetime.now(dt.UTC).date().isoformat()
        values = {"id": sid, "cid": cid, "fmt": "jsonl", "name": admin_name,
                  "action": "clear-delays"}
        streamed = {"/audit/export.jsonl", "/audit/bundle.zip", "/audit/sessions/{id}/bundle.zip"}
        routes = broker_routes(broker)
        assert streamed <= {path for _, path in routes}
        seen = []
        for method, template in routes:
            if template.startswith("/static"):
                continue
            path = template.format(**values) + f"?from={day}&to={day}"
            async with admin.http.request(method, admin.url + path,
                                          allow_redirects=False) as r:
                await r.read()
                seen.append((method, template, r.status))
                assert r.headers.get("Cache-Control") == "no-store", (method, template, r.status)
                for header in SECURITY_HEADERS:
                    assert header in r.headers, (method, template, r.status, header)
                if template in streamed or template.startswith("/audit/sessions/{id}/"):
                    assert r.status == 200, (method, template, r.status)
        assert len(seen) >= 25, seen
        async with admin.http.get(admin.url + "/static/common.js") as r:
            assert r.status == 200 and r.headers["X-Content-Type-Options"] == "nosniff"
            assert "no-store" not in r.headers.get("Cache-Control", "")
        await admin.post("/logout", {"csrf": admin.csrf})
        async with admin.http.get(admin.url + "/audit", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Cache-Control"] == "no-store"
    finally:
        await agent.close()
        await admin.close()


# --- TLS ------------------------------------------------------------------------------------------


def handshake(broker: Broker, ciphers: str) -> str | None:
    """The TLS 1.2 suite the broker agrees to from ``ciphers``, or None if it refuses."""
    ctx = ssl.create_default_context(cafile=str(broker.ca))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    try:
        with socket.create_connection(("127.0.0.1", port_of(broker)), timeout=T) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as conn:
            suite = conn.cipher()
            return suite[0] if suite else None
    except ssl.SSLError:
        return None


async def test_tls_1_2_offers_aead_suites_only(broker):
    """A client that offers TLS 1.2 CBC suites only (SHA-1 or SHA-2 MACs, with or without
    forward secrecy) is refused; an AEAD suite (AES-GCM, ChaCha20-Poly1305) is agreed."""
    cbc = ("AES128-SHA", "AES256-SHA256", "ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA",
           "ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-RSA-AES128-SHA")
    for suite in cbc:
        assert await asyncio.to_thread(handshake, broker, suite) is None, suite
    assert await asyncio.to_thread(handshake, broker, ":".join(cbc)) is None
    for suite in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                  "ECDHE-ECDSA-CHACHA20-POLY1305"):
        assert await asyncio.to_thread(handshake, broker, suite) == suite


# --- admin URL variants ------------------------------------------------------------------------


ADMIN_VARIANTS = ["/admin", "/admin/", "//admin", "///admin", "/%2e/admin", "/./admin",
                  "/admin/.", "/admin/../admin", "/x/../admin", "/ADMIN", "/Admin", "/%61dmin",
                  "/%2561dmin", "/admin%2f", "/admin%2F", "/admin;", "/admin;x=1", "/admin%00",
                  "/admin%20", "/admin.", "/admin?x=/", "/admin#x", "/static/../admin",
                  "/static/%2e%2e/admin", "https://127.0.0.1/admin", "/admin/users",
                  "/setup", "/install", "/admin/setup", "/api/admin"]


async def test_admin_urls_in_every_spelling_stay_closed_to_non_admins(site, broker):
    """A technician, an auditor and an anonymous visitor ask for the admin page with
    every spelling of its path (trailing slash, doubled slash, %2e and dot segments,
    case, encoded letters, ;params, NUL) and for setup-looking URLs, then post to the
    admin actions the same ways with their own valid form token: never the page
    (never a 200), no user created, nobody disabled. The admin gets the page."""
    tech_name, = site.take("technician")
    auditor_name, = site.take("auditor")
    admin_name, = site.take("admin")
    tech = await browser(broker, tech_name, "127.0.24.1")
    auditor = await browser(broker, auditor_name, "127.0.24.2")
    admin = await browser(broker, admin_name, "127.0.24.3")
    try:
        for who in (tech, auditor, None):
            cookie = f"\r\nCookie: __Host-tether={session_cookie(who)}" if who else ""
            for path in ADMIN_VARIANTS:
                status, headers, body = await raw_http(
                    broker, f"GET {path} HTTP/1.1\r\nHost: x{cookie}")
                assert status != 200 and ADMIN_PAGE.encode() not in body, (
                    who and who.ip, path, status)
                if status in (301, 302, 303, 307, 308):
                    assert headers["location"] in ("/login",), (path, headers["location"])
            for who_csrf, path in ((who.csrf if who else "", p) for p in (
                    "/admin/users", "//admin/users", "/%61dmin/users", "/admin//users",
                    "/admin/users/", "/%2e/admin/users", f"/admin/users/{admin_name}/disable",
                    f"//admin/users/{admin_name}/disable",
                    f"/admin/users/{admin_name}/%64isable",
                    f"/admin/users/{admin_name}/disable/", f"/admin/users/{admin_name}/role")):
                form = (f"csrf={who_csrf}&name=pwned-{secrets.token_hex(2)}&role=admin"
                        f"&password=pppppppppppp").encode()
                status, _, body = await raw_http(
                    broker, f"POST {path} HTTP/1.1\r\nHost: x{cookie}\r\n"
                            f"Origin: {broker.url}\r\n"
                            "Content-Type: application/x-www-form-urlencoded\r\n"
                            f"Content-Length: {len(form)}", form)
                assert status in (303, 401, 403, 404, 405), (who and who.ip, path, status)
                assert ADMIN_PAGE.encode() not in body
        assert not db(broker, "SELECT name FROM users WHERE name LIKE 'pwned-%'")
        assert db(broker, "SELECT role, disabled FROM users WHERE name = ?", admin_name) == [
            ("admin", 0)]
        status, page = await admin.page("/admin")
        assert status == 200 and ADMIN_PAGE in page
    finally:
        for b in (tech, auditor, admin):
            await b.close()


# --- log injection -----------------------------------------------------------------------------


FORGED = '{"level": "critical", "logger": "tether.broker", "msg": "FORGED-ENTRY"}'
SHORT_FORGED = '{"msg":"FORGED-ENTRY"}'


def strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def no_control(value: Any) -> bool:
    return not any(c in text for text in strings(value) for c in "\r\n\x1b\x07\x00\x85")


async def test_cr_lf_in_anything_an_attacker_sends_forges_no_log_line(site, broker):
    """The attacker puts CR/LF (and escape sequences) followed by a fake JSON log entry
    into every place their text might reach a log: the sign-in user name, the URL
    path, a raw header, the client's hello (version and OS), the customer's machine and
    user name, and a refusal reason. The broker's log stays one JSON object per line
    (the fake entry only ever appears inside a string), the audit log stores the
    client's text cleaned, and the auditor's JSONL and CSV exports keep one event per
    record."""
    tech_name, = site.take("technician")
    auditor_name, = site.take("auditor")
    crlf = "\r\n" + FORGED + "\r\n"
    # the sign-in user name (audited as the actor of the failure summary)
    evil = Browser(broker, "127.0.25.1")
    try:
        status, _, _ = await evil.try_login("x\r\n" + SHORT_FORGED + "\r\n", "pw")
        assert status == 401
    finally:
        await evil.close()
    # the URL path (access log) and a header with a bare CR (refused outright)
    status, _, _ = await raw_http(broker, "GET /login%0d%0a" + FORGED.replace(" ", "%20")
                                  .replace('"', "%22") + " HTTP/1.1\r\nHost: x")
    assert status == 404
    status, _, _ = await raw_http(broker, "GET /login HTTP/1.1\r\nHost: x\r\n"
                                          "User-Agent: ua\r" + FORGED)
    assert status == 400
    # the client's own text, and the customer's answers
    agent = await FakeAgent(broker).connect(
        {"type": "hello", "version": "1.0" + crlf, "os": "Linux\x1b[2J\x1b]0;t\x07" + crlf})
    tech = await browser(broker, tech_name, "127.0.25.2")
    try:
        code = await agent.code()
        sid = await tech.session_id(code)
        await agent.next("claimed")
        await agent.send(type="session_decision", allow=True, reason="ok" + crlf,
                         machine="pc" + crlf + "\x1b[31m", user="bob\n" + FORGED,
                         os="Linux\x85" + FORGED)
        await tech.wait_for(sid, lambda s: s["state"] == "active", "consent")
        await tech.api("POST", f"/api/sessions/{sid}/channels", {"kind": "terminal"})
        req = await agent.next("channel_request")
        await agent.send(type="channel_decision", channel=req["channel"], allow=False,
                         reason="no" + crlf)
        await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "refused", "refusal")
        status, _ = await tech.end(sid)
        assert status == 200
    finally:
        await agent.close()
        await tech.close()

    # the failure summary is written within the fail window (1 s); an unknown user name
    # is not written down at all (it may be a password typed into the wrong field)
    deadline = time.monotonic() + 3 * T
    while not db(broker, "SELECT 1 FROM audit_events WHERE action = 'user.signin_failed'"
                         " AND actor = '(unknown user)'"):
        assert time.monotonic() < deadline, "no sign-in failure summary"
        await asyncio.sleep(0.2)

    seen = 0
    for line in broker.log_text().splitlines():
        if "FORGED" in line:
            entry = json.loads(line)  # the whole line is one JSON object: the broker's own
            assert "ts" in entry and entry.get("msg") != "FORGED-ENTRY", line
            seen += 1
    assert seen, "the injected path should be in the access log (escaped)"

    rows = db(broker, "SELECT action, detail FROM audit_events WHERE session_id = ? OR"
                      " action = 'client.connected'", sid)
    for action, detail in rows:
        if action in ("client.connected", "session.consented", "session.refused",
                      "channel.refused"):
            assert no_control(json.loads(detail)), (action, detail)

    auditor = await browser(broker, auditor_name, "127.0.25.3")
    try:
        day = dt.datetime.now(dt.UTC).date().isoformat()
        status, body = await get(auditor, f"/audit/export.jsonl?from={day}&to={day}")
        assert status == 200
        seqs = [json.loads(line)["seq"] for line in body.decode().split("\n") if line]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
        events = db(broker, "SELECT COUNT(*) FROM audit_events WHERE session_id = ?", sid)[0][0]
        status, body = await get(auditor, f"/audit/sessions/{sid}/events.csv")
        assert status == 200
        records = list(csv.reader(io.StringIO(body.decode(), newline="")))
        assert len(records) == 1 + events and all(len(r) == len(records[0]) for r in records)
    finally:
        await auditor.close()


async def test_a_malformed_request_leaves_no_cookie_or_token_in_the_log(site, broker):
    """A request whose headers break HTTP (a control character, a bare CR) while it
    carries a real login cookie and form token -- as a broken proxy or a planted cookie
    could make a browser send -- is refused with 400, and neither the cookie nor the
    token reaches the broker's log (DESIGN.md, non-negotiable 4: no token or cookie in
    any log)."""
    name, = site.take("technician")
    tech = await browser(broker, name, "127.0.27.1")
    try:
        token, csrf = session_cookie(tech), tech.csrf
        assert token and csrf
        for head in (f"GET /dashboard HTTP/1.1\r\nHost: x\r\nCookie: __Host-tether={token};"
                     " pad=\x01",
                     f"GET /dashboard HTTP/1.1\r\nHost: x\r\nCookie: __Host-tether={token}\rx",
                     f"POST /api/sessions/s_x/end HTTP/1.1\r\nHost: x\r\nX-CSRF-Token: {csrf}\x00"):
            status, _, _ = await raw_http(broker, head, ip=tech.ip)
            assert status == 400
        await asyncio.sleep(0.2)
        log = broker.log_text()
        assert token not in log, "the login cookie is in the broker's log"
        assert csrf not in log, "the form token is in the broker's log"
    finally:
        await tech.close()


# --- revocation ---------------------------------------------------------------------------------


async def test_a_technician_whose_role_is_revoked_mid_session_loses_everything_at_once(site,
                                                                                     broker):
    """An admin changes a technician's role to auditor (from the command line, another
    process) while the technician is in a session with an open shell and the live
    console. Within moments: the shell viewer and live socket close, the customer is
    told the session ended and its relay is closed, the old cookie and form token no
    longer work for anything, and signing in again (now an auditor) cannot connect to
    a customer."""
    name, = site.take("technician")
    tech = await browser(broker, name, "127.0.26.1")
    agent = await FakeAgent(broker).connect()
    live: aiohttp.ClientWebSocketResponse | None = None
    try:
        sid, cid, secret = await shell_session(tech, agent)
        relay = await agent.relay(secret)
        viewer = await open_viewer(tech, sid, cid)
        live = await tech.http.ws_connect(wss(broker, f"/ws/live?session={sid}"))
        await live.receive(timeout=T)  # the session's current state

        run_cli("user", "role", name, "--role", "auditor", "--data", str(broker.data))

        code, _ = await viewer.closed()
        assert code is not None
        msg = await live.receive(timeout=2 * T)
        while msg.type == aiohttp.WSMsgType.TEXT:  # updates sent before the close
            msg = await live.receive(timeout=2 * T)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, (msg.type, msg.data)
        ended = await agent.next("ended")
        assert "access ended" in ended["reason"], ended
        with pytest.raises(ConnectionClosed):
            async with asyncio.timeout(2 * T):
                while True:
                    await relay.recv()
        assert (await tech.api("GET", "/api/sessions"))[0] == 401
        status, _ = await tech.api("POST", f"/api/sessions/{sid}/channels", {"kind": "terminal"})
        assert status == 401
        status, _ = await tech.post("/sessions", {"code": "123 456 780", "csrf": tech.csrf})
        assert status in (303, 401, 403)  # to the sign-in page, never a session
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await tech.http.ws_connect(wss(broker, "/ws/live"))
        assert refused.value.status == 401
        assert db(broker, "SELECT COUNT(*) FROM audit_events WHERE action = 'user.revoked'"
                          " AND detail LIKE ?", f"%{name}%")[0][0] == 1

        # signing in again: an auditor now, who cannot take a customer's code
        again = Browser(broker, "127.0.26.2")
        other_agent = await FakeAgent(broker).connect()
        try:
            status, _, headers = await again.try_login(name, PASSWORD,
                                                       totp_now(broker, name, 1))
            assert status == 303
            await again.page("/dashboard")  # now the Audit section, and its form token
            assert again.last_path == "/audit"
            status, _, text = await again.redeem_raw(await other_agent.code())
            assert status == 403 and "only technicians" in text
        finally:
            await other_agent.close()
            await again.close()
    finally:
        if live is not None:
            await live.close()
        await agent.close()
        await tech.close()
