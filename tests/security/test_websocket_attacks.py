"""Attacks on the WebSockets: cross-site hijacking, forged consent, hostile JSON.

Cross-site WebSocket hijacking (as in MeshCentral CVE-2024-26135): a page on another
site opens the console's sockets in the victim's browser, which sends the victim's
cookie along; only the Origin header tells the broker who is asking. Consent is the
customer's alone: a technician who speaks the client's protocol themselves, or sends
its messages where the console listens, must change nothing.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.helpers import Broker, Customer, T, Viewer
from tests.security.conftest import Site
from tests.security.tools import (
    FakeAgent,
    browser,
    closed_with,
    port_of,
    raw_ws,
    session_cookie,
    shell_session,
    tls,
    wss,
)


@pytest.fixture(scope="module")
def site(start_broker) -> Site:
    return start_broker("--pair-timeout", "5", "--consent-wait", "8", "--max-codes-per-ip", "50",
                        technician=7)


@pytest.fixture
def broker(site: Site) -> Broker:
    return site.broker


def status_of(head: str) -> int:
    return int(head.split(" ", 2)[1])


def foreign_origins(broker: Broker) -> list[str | None]:
    port = port_of(broker)
    own = f"127.0.0.1:{port}"
    return [None, "", "null", "https://evil.example", f"http://{own}",
            f"https://127.0.0.1:{port + 1}", "https://127.0.0.1", f"https://{own}/",
            f"https://{own}.evil.example", f"https://evil.{own}", f"https://{own}@evil.example",
            f"https://evil.example/https://{own}", f"https://localhost.evil.example:{port}",
            f"https://{own}, https://evil.example", f"wss://{own}",
            f"HTTPS://EVIL.EXAMPLE:{port}"]


async def test_cross_site_websocket_hijacking_is_refused(site, broker):
    """With the victim's valid cookie, the live-updates and terminal-viewer sockets are
    refused (403, no upgrade) for every Origin that is not the console's own -- missing,
    empty, "null", another site, another port or scheme, look-alike hosts -- and opened
    for the console's own spellings (127.0.0.1, localhost, [::1] on its port)."""
    name, = site.take()
    victim = await browser(broker, name, "127.0.30.1")
    cookie = f"Cookie: __Host-tether={session_cookie(victim)}\r\n"
    port = port_of(broker)
    try:
        for path in ("/ws/live", "/ws/relay/viewer"):
            for origin in foreign_origins(broker):
                extra = cookie + ("" if origin is None else f"Origin: {origin}\r\n")
                _, writer, head = await raw_ws(broker, path, extra, ip=victim.ip)
                writer.close()
                assert status_of(head) == 403, (path, origin, head.split("\r\n")[0])
            for own in (f"https://127.0.0.1:{port}", f"https://localhost:{port}",
                        f"https://[::1]:{port}"):
                _, writer, head = await raw_ws(broker, path, cookie + f"Origin: {own}\r\n",
                                               ip=victim.ip)
                writer.close()
                assert status_of(head) == 101, (path, own, head.split("\r\n")[0])
            # and without the cookie, even from the right origin: not signed in
            _, writer, head = await raw_ws(broker, path, f"Origin: https://127.0.0.1:{port}\r\n")
            writer.close()
            assert status_of(head) == 401
    finally:
        await victim.close()


async def test_a_browser_cannot_open_the_clients_endpoints(site, broker):
    """The client's control and relay endpoints refuse any request that carries an
    Origin -- a page in a browser posing as a customer's client -- even the console's
    own origin."""
    for path in ("/ws/agent", "/ws/relay/agent"):
        for origin in ("https://evil.example", broker.url, "null"):
            _, writer, head = await raw_ws(broker, path, f"Origin: {origin}\r\n")
            writer.close()
            assert status_of(head) == 403, (path, origin)


async def test_a_technician_cannot_forge_the_customers_consent_to_the_session(
        site, broker, tmp_path: Path):
    """A real customer's client is asking its customer whether to accept the technician.
    The technician, impatient, speaks the client's protocol themselves: a
    ``session_decision`` as the first frame of their own client connection, one after a
    hello, a ``resume`` with a made-up secret; the same message sent over the console's
    live socket and as a viewer's first frame; and a channel request through the API.
    None of it gets through: the session stays "claimed" until the customer answers,
    and when the customer says no, it ends refused, with no consent in the audit log."""
    name, = site.take()
    tech = await browser(broker, name, "127.0.31.1")
    customer = Customer(broker, "--consent-timeout", "8", tmp=tmp_path)
    forged = json.dumps({"type": "session_decision", "allow": True, "reason": "yes",
                         "machine": "forged", "user": "forged", "os": "forged"})
    try:
        sid = await tech.session_id(customer.code())
        customer.child.expect("wants to start a remote support session")

        ws = await connect(wss(broker, "/ws/agent"), ssl=tls(broker), compression=None,
                           open_timeout=T)
        assert (await closed_with(ws, forged))[0] == 1008
        ws = await connect(wss(broker, "/ws/agent"), ssl=tls(broker), compression=None,
                           open_timeout=T)
        hello = json.dumps({"type": "hello", "version": "x", "os": "x"})
        code, reason = await closed_with(ws, hello, forged)
        assert code == 1008 and "no session" in reason, (code, reason)
        ws = await connect(wss(broker, "/ws/agent"), ssl=tls(broker), compression=None,
                           open_timeout=T)
        code, _ = await closed_with(ws, json.dumps({"type": "resume", "secret": sid,
                                                    "version": "x", "os": "x"}))
        assert code == 4401

        live = await tech.http.ws_connect(wss(broker, f"/ws/live?session={sid}"))
        await live.send_str(forged)
        viewer = await tech.http.ws_connect(wss(broker, "/ws/relay/viewer"))
        await viewer.send_str(forged)
        msg = await viewer.receive(timeout=T)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data in (1008, 4401)
        status, body = await tech.api("POST", f"/api/sessions/{sid}/channels",
                                      {"kind": "terminal", "allow": True, "state": "open"})
        assert status == 409, body
        await live.close()

        state = await tech.state(sid)
        assert state["state"] == "claimed" and state["customer"] is None
        customer.child.expect(r"\[y/N\] ")
        customer.child.sendline("n")
        state = await tech.wait_for(sid, lambda s: s["state"] == "ended", "refusal")
        assert "refused" in (state["end_reason"] or ""), state
        assert customer.wait_exit() is not None
    finally:
        customer.close()
        await tech.close()
    text = broker.log_text()
    assert '"forged"' not in text
    con = sqlite3.connect(f"file:{broker.data / 'tether.db'}?mode=ro", uri=True)
    try:
        actions = [a for (a,) in con.execute(
            "SELECT action FROM audit_events WHERE session_id = ? ORDER BY seq", (sid,))]
    finally:
        con.close()
    assert "session.refused" in actions and "session.consented" not in actions


async def test_a_technician_cannot_forge_the_customers_yes_to_a_channel(site, broker):
    """The customer has accepted the session but not yet the shell. The technician's own
    client (its own session with them) says yes to the customer's channel by its id,
    and sends the broker the broker's own messages (``channel_ready``, ``claimed``,
    ``code``); the technician asks to attach before the yes and presents guessed relay
    secrets. Every forged frame closes the forger's connection (1008, 4401); the
    customer's channel stays "requested", no relay secret is issued to anyone, and the
    customer's no is final."""
    name, = site.take()
    tech = await browser(broker, name, "127.0.32.1")
    victim = await FakeAgent(broker, "127.0.32.2").connect()
    forger = await FakeAgent(broker, "127.0.32.3").connect()
    try:
        sid = await tech.session_id(await victim.code())
        await victim.accept_session()
        await tech.wait_for(sid, lambda s: s["state"] == "active", "consent")
        status, body = await tech.api("POST", f"/api/sessions/{sid}/channels", {"kind": "terminal"})
        cid = body["channel"]["id"]
        request = await victim.next("channel_request")
        assert request["channel"] == cid

        await tech.session_id(await forger.code())  # the technician's own machine
        await forger.accept_session()
        await forger.send(type="channel_decision", channel=cid, allow=True, reason="yes")
        code, reason = await forger.closed()
        assert code == 1008 and "unknown channel" in reason, (code, reason)
        for kind, fields in (("channel_ready", {"channel": cid, "secret": "x" * 22}),
                             ("claimed", {"session": sid, "technician": "x", "org": "x"}),
                             ("code", {"code": "123456789", "expires_in": 60})):
            ws = await connect(wss(broker, "/ws/agent"), ssl=tls(broker), compression=None,
                               open_timeout=T)
            frame = json.dumps({"type": kind, **fields})
            hello = json.dumps({"type": "hello", "version": "x", "os": "x"})
            code, reason = await closed_with(ws, hello, frame)
            assert code == 1008 and "unknown message type" in reason, (kind, code, reason)

        status, _ = await tech.api("POST", f"/api/sessions/{sid}/channels/{cid}/attach")
        assert status == 404  # no secret before the customer's yes
        for guess in (cid, sid, "A" * 22, ""):
            ws = await connect(wss(broker, "/ws/relay/agent"), ssl=tls(broker),
                               compression=None, open_timeout=T)
            code, _ = await closed_with(ws, json.dumps({"secret": guess}))
            assert code == 4401, guess
        state = await tech.state(sid)
        assert [c["state"] for c in state["channels"]] == ["requested"]

        await victim.send(type="channel_decision", channel=cid, allow=False, reason="no")
        await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "refused", "refusal")
        assert not [m for m in victim.seen if m["type"] == "channel_ready"]
    finally:
        await victim.close()
        await forger.close()
        await tech.close()


NESTED_ARRAY = "[" * 30000 + "]" * 30000  # 60 KB: under the control limit, too deep
NESTED_OBJECT = '{"a":' * 10000 + "1" + "}" * 10000
LONG_INT = '{"type":"hello","version":' + "9" * 5000 + ',"os":"x"}'
FIRST_FRAME_ATTACKS = [  # (name, frame, close codes that are right)
    ("deep array", NESTED_ARRAY, {1008}),
    ("deep object", NESTED_OBJECT, {1008}),
    ("5000-digit integer", LONG_INT, {1008}),
    ("1e400", '{"type":"hello","version":1e400,"os":"x"}', {1008}),
    ("NaN", '{"type":"hello","version":NaN,"os":"x"}', {1008}),
    ("lone surrogate", '{"type":"hello","version":"\\ud800","os":"x"}', {1008}),
    ("70 KB string", '{"type":"hello","version":"x","os":"' + "y" * 70000 + '"}', {1009}),
    ("2 MB", "x" * (2 << 20), {1009}),
]


async def test_oversized_and_deeply_nested_json_closes_only_that_connection(site, broker):
    """Hostile JSON on every socket and the API: nesting 10,000-30,000 deep within the
    size limit, a 5,000-digit integer, 1e400, NaN, a lone surrogate, and frames over the
    limit (control 64 KiB, first relay frame 4 KiB, live 4 KiB, terminal 1 MiB). Each
    closes only its own connection with 1008 (bad message) or 1009 (too big), or is a
    400/413 on the API; the broker keeps serving, and a shell another technician has
    open keeps relaying throughout."""
    name, = site.take()
    tech = await browser(broker, name, "127.0.33.1")
    agent = await FakeAgent(broker, "127.0.33.2").connect()
    try:
        sid, cid, secret = await shell_session(tech, agent)
        relay = await agent.relay(secret)
        viewer = await tech.attach(sid, cid)

        async def still_relaying(marker: str) -> None:
            await relay.send(f"{marker}\r\n".encode())
            await viewer.expect(marker)

        await still_relaying("before")
        for what, frame, codes in FIRST_FRAME_ATTACKS:
            ws = await connect(wss(broker, "/ws/agent"), ssl=tls(broker), compression=None,
                               open_timeout=T, max_size=None)
            code, _ = await closed_with(ws, frame)
            assert code in codes, ("/ws/agent", what, code)
        for path in ("/ws/relay/agent", "/ws/relay/viewer"):
            for what, frame, codes in (("deep array", "[" * 2000 + "]" * 2000, {1008, 4401}),
                                       ("5 KB", '{"secret":"' + "s" * 5000 + '"}', {1009}),
                                       ("2 MB", "x" * (2 << 20), {1009})):
                got: int | None
                if path.endswith("viewer"):
                    ws2 = await tech.http.ws_connect(wss(broker, path), max_msg_size=0)
                    await ws2.send_str(frame)
                    msg = await ws2.receive(timeout=2 * T)
                    got = msg.data if msg.type == aiohttp.WSMsgType.CLOSE else ws2.close_code
                else:
                    ws = await connect(wss(broker, path), ssl=tls(broker), compression=None,
                                       open_timeout=T, max_size=None)
                    got, _ = await closed_with(ws, frame)
                assert got in codes, (path, what, got)
        live = await tech.http.ws_connect(wss(broker, "/ws/live"))
        await live.send_str("[" * 5000)
        msg = await live.receive(timeout=T)
        while msg.type == aiohttp.WSMsgType.TEXT:
            msg = await live.receive(timeout=T)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009, (msg.type, msg.data)
        await still_relaying("after-sockets")

        api = f"/api/sessions/{sid}/channels"
        for what, body in (("deep array", "[" * 8000 + "]" * 8000),
                           ("deep object", '{"a":' * 3000 + "1" + "}" * 3000),
                           ("5000-digit integer", '{"kind":"terminal","cols":' + "9" * 5000 + "}"),
                           ("1e400", '{"kind":"terminal","cols":1e400}'),
                           ("NaN", "NaN"), ("70 KB", '{"kind":"' + "k" * 70000 + '"}')):
            async with tech.http.post(tech.url + api, data=body.encode(), headers={
                    "Content-Type": "application/json", "X-CSRF-Token": tech.csrf}) as r:
                assert r.status in (400, 413), (what, r.status)
        async with tech.http.post(tech.url + "/login", data={"username": "u" * 20000}) as r:
            assert r.status in (400, 413)
        # a terminal control frame that is too deep or too big closes only that viewer
        await viewer.ws.send_str("[" * 3000 + "]" * 3000)
        closed, _ = await viewer.closed()
        assert closed in (1008, 1009)
        again = await tech.attach(sid, cid)
        await relay.send(b"after-all\r\n")
        await again.expect("after-all")
        assert broker.alive()
    finally:
        await agent.close()
        await tech.close()


async def test_a_viewer_cannot_send_control_messages_through_the_terminal(site, broker):
    """Inside an open shell channel the technician sends, as terminal control frames,
    the client's own messages (a channel yes, a session yes, an end) and a resize far
    out of range: each is refused and closes only that viewer (1008); the customer's end
    receives none of them."""
    name, = site.take()
    tech = await browser(broker, name, "127.0.34.1")
    agent = await FakeAgent(broker, "127.0.34.2").connect()
    try:
        sid, cid, secret = await shell_session(tech, agent)
        relay = await agent.relay(secret)
        for frame in ({"type": "channel_decision", "channel": cid, "allow": True, "reason": ""},
                      {"type": "session_decision", "allow": True, "reason": ""},
                      {"type": "channel_ready", "channel": cid, "secret": "x"},
                      {"type": "resize", "cols": 10**6, "rows": -1}):
            viewer = await tech.attach(sid, cid)
            await viewer.ws.send_str(json.dumps(frame))
            code, _ = await viewer.closed()
            assert code == 1008, (frame, code)
        seen = []
        try:
            while True:
                seen.append(await asyncio.wait_for(relay.recv(), 0.3))
        except TimeoutError:
            pass
        assert all(not isinstance(m, str) or "decision" not in m for m in seen), seen
        assert all(not isinstance(m, str) or "channel_ready" not in m for m in seen), seen
    finally:
        await agent.close()
        await tech.close()


async def test_a_secret_presented_in_the_wrong_place_is_not_used_up(site, broker):
    """Each end's relay secret is bound to its channel, its endpoint and (the viewer's)
    the technician it was issued to. Presented anywhere else -- the client's secret on
    the viewer endpoint by the session's own technician, the viewer's secret on the
    client's endpoint or by another technician -- it is refused (4401 / 4403) and not
    used up: a stray request cannot burn the real viewer's secret. The real client and
    viewer then connect with those same secrets, and output flows."""
    owner_name, other_name = site.take(n=2)
    owner = await browser(broker, owner_name, "127.0.35.1")
    other = await browser(broker, other_name, "127.0.35.2")
    agent = await FakeAgent(broker, "127.0.35.3").connect()
    try:
        sid, cid, agent_secret = await shell_session(owner, agent)
        stray = await owner.http.ws_connect(wss(broker, "/ws/relay/viewer"))
        await stray.send_str(json.dumps({"secret": agent_secret}))
        msg = await stray.receive(timeout=T)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, (msg.type, msg.data)
        status, body = await owner.api("POST", f"/api/sessions/{sid}/channels/{cid}/attach")
        assert status == 200, body
        viewer_secret = body["secret"]
        ws = await connect(wss(broker, "/ws/relay/agent"), ssl=tls(broker), compression=None,
                           open_timeout=T)
        code, _ = await closed_with(ws, json.dumps({"secret": viewer_secret}))
        assert code == 4401, code
        stolen = await other.http.ws_connect(wss(broker, "/ws/relay/viewer"))
        await stolen.send_str(json.dumps({"secret": viewer_secret}))
        msg = await stolen.receive(timeout=T)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4403, (msg.type, msg.data)

        relay = await agent.relay(agent_secret)
        ws_viewer = await owner.http.ws_connect(wss(broker, "/ws/relay/viewer"), max_msg_size=0)
        await ws_viewer.send_str(json.dumps({"secret": viewer_secret}))
        await owner.wait_for(sid, lambda s: s["channels"][0]["state"] == "open", "channel open")
        await relay.send(b"right-place\r\n")
        await Viewer(ws_viewer).expect("right-place")
    finally:
        await agent.close()
        await owner.close()
        await other.close()
