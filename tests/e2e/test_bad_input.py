"""Bad input gets a clear error, is logged without secrets, and harms no one else."""

from __future__ import annotations

import json
import ssl

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from yarl import URL

from tests.conftest import PASSWORD
from tests.e2e.test_support_session import start_shell
from tests.helpers import T, Technician, Viewer


def wss(broker, path: str) -> str:
    return broker.url.replace("https://", "wss://") + path


def ctx(broker) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(broker.ca))


async def agent_ws(broker, **kw):
    return await connect(wss(broker, "/ws/agent"), ssl=ctx(broker), compression=None,
                         open_timeout=T, **kw)


async def closed_with(ws, *frames) -> tuple[int, str]:
    try:
        for frame in frames:
            await ws.send(frame)
        for _ in range(10):
            await ws.recv()
    except ConnectionClosed as exc:
        return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("not closed")


HELLO = json.dumps({"type": "hello", "version": "t", "os": "Linux"})


@pytest.mark.parametrize("frames, code, reason", [
    (["{not json"], 1008, "malformed JSON"),
    ([json.dumps({"type": "launch_missiles"})], 1008, "unknown message type"),
    ([HELLO, json.dumps({"type": "session_decision", "allow": "yes", "reason": ""})],
     1008, "bad field 'allow'"),
    ([HELLO, json.dumps({"type": "heartbeat", "extra": 1})], 1008, "unknown field"),
    ([HELLO, "[" * 50000 + "]" * 50000], 1009, ""),
    ([HELLO, json.dumps({"type": "heartbeat", "pad": "x" * 70000})], 1009, ""),
    ([HELLO, b"\x00binary"], 1008, "binary frames are not allowed"),
    ([HELLO, json.dumps({"type": "channel_decision", "channel": "c_nope", "allow": True,
                         "reason": "yes"})], 1008, "unknown channel"),
])
async def test_malformed_control_frames_close_only_that_connection(
        broker, tech, customer, frames, code, reason):
    sid, cid = await start_shell(tech, customer)  # a session that must not be harmed
    viewer = await tech.attach(sid, cid)
    ws = await agent_ws(broker, max_size=None)
    got_code, got_reason = await closed_with(ws, *frames)
    assert got_code == code
    assert reason in got_reason or (reason == "" and got_code == 1009)
    assert broker.alive()
    await viewer.send("echo still-here\r")
    await viewer.expect("still-here\r\n")


async def test_browser_origin_is_refused_on_the_client_endpoint(broker):
    with pytest.raises(InvalidStatus) as info:
        await connect(wss(broker, "/ws/agent"), ssl=ctx(broker), origin="https://evil.example",
                      open_timeout=T)
    assert info.value.response.status_code == 403


async def test_relay_secrets_are_single_use_and_bound_to_their_end(broker, tech, customer):
    sid, cid = await start_shell(tech, customer)
    status, body = await tech.api("POST", f"/api/sessions/{sid}/channels/{cid}/attach")
    secret = body["secret"]
    # the viewer's secret on the client's endpoint: refused, and not used up (a stray
    # request must not burn the real viewer's secret)
    ws = await connect(wss(broker, "/ws/relay/agent"), ssl=ctx(broker), open_timeout=T)
    assert await closed_with(ws, json.dumps({"secret": secret})) == (
        4401, "secret presented on the wrong endpoint")
    # on its own endpoint it works once; the same secret a second time does not
    ws = await tech.http.ws_connect(wss(broker, "/ws/relay/viewer"), max_msg_size=0)
    await ws.send_str(json.dumps({"secret": secret}))
    viewer = Viewer(ws)
    await viewer.expect(r"# |\$ ")
    again = await tech.http.ws_connect(wss(broker, "/ws/relay/viewer"))
    await again.send_str(json.dumps({"secret": secret}))
    msg = await again.receive(timeout=T)
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401
    status, body = await tech.api("POST", f"/api/sessions/{sid}/channels/{cid}/attach")
    assert status == 409  # already attached: no second viewer secret while open
    # a secret that was never issued, and no secret at all
    for first in (json.dumps({"secret": "A" * 22}), json.dumps({"nothing": 1}), "garbage"):
        ws = await tech.http.ws_connect(wss(broker, "/ws/relay/viewer"))
        await ws.send_str(first)
        msg = await ws.receive(timeout=T)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data in (4401, 1008)
    await viewer.send("echo unaffected\r")
    await viewer.expect("unaffected\r\n")


async def test_viewer_endpoints_need_a_session_cookie_and_our_origin(broker, tech):
    anon = Technician(broker)
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await anon.http.ws_connect(wss(broker, "/ws/relay/viewer"))
        assert info.value.status == 401
        for path in ("/ws/relay/viewer", "/ws/live"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as info:
                await tech.http.ws_connect(wss(broker, path),
                                           headers={"Origin": "https://evil.example"})
            assert info.value.status == 403
    finally:
        await anon.close()


async def test_console_and_api_need_sign_in_and_csrf(broker, tech):
    anon = Technician(broker)
    try:
        async with anon.http.get(broker.url + "/dashboard", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "/login"
        status, body = await anon.api("GET", "/api/sessions")
        assert status == 401 and body == {"error": "sign in first"}
        status, body = await anon.api("POST", "/api/sessions/s_x/end")
        assert status == 401
    finally:
        await anon.close()
    # signed in, but without the CSRF token, or from another origin
    async with tech.http.post(broker.url + "/api/sessions/s_x/end") as r:
        assert r.status == 403
    async with tech.http.post(broker.url + "/api/sessions/s_x/end",
                              headers={"X-CSRF-Token": tech.csrf,
                                       "Origin": "https://evil.example"}) as r:
        assert r.status == 403
    status, body = await tech.api("POST", "/api/sessions/s_nope/end")
    assert status == 404
    status, body = await tech.api("POST", "/api/sessions/s_nope/channels", [1, 2])
    assert status in (400, 404)


async def test_oversized_terminal_input_closes_only_that_viewer(broker, tech, customer):
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.expect(r"# |\$ ")
    await viewer.ws.send_bytes(b"x" * (1024 * 1024 + 1))
    code, _ = await viewer.closed()
    # 1009, or 1006 when the broker's close meets the unread megabyte and TCP resets
    assert code in (1009, 1006)
    s = await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "detached", "detach")
    assert s["state"] == "active"
    again = await tech.attach(sid, cid)
    await again.send("echo back\r")
    await again.expect("back\r\n")


async def test_cookies_are_host_secure_httponly_strict(broker):
    t = Technician(broker)
    try:
        async with t.http.get(broker.url + "/login") as r:
            headers = r.headers.getall("Set-Cookie")
            csp = r.headers["Content-Security-Policy"]
        assert headers and all(h.startswith("__Host-") for h in headers)
        for h in headers:
            low = h.lower()
            assert "secure" in low and "httponly" in low and "samesite=strict" in low
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["script-src"] == "'self'"
        assert directives["frame-ancestors"] == "'none'"
    finally:
        await t.close()


async def test_a_stale_login_cookie_does_not_block_signing_in(broker):
    t = Technician(broker)
    try:
        # what a browser still sends after the login expired on the server
        t.http.cookie_jar.update_cookies({"__Host-tether": "expired-" + "x" * 16},
                                         response_url=URL(broker.url))
        status, _ = await t.login("alice", PASSWORD)
        assert status == 200
        status, page = await t.page("/dashboard")
        assert status == 200 and "Session code" in page
    finally:
        await t.close()


@pytest.mark.parametrize("content_type, body", [
    ("multipart/form-data", b"no boundary"),
    ("multipart/form-data; boundary=zz", b"--zz\r\nbroken"),
    ("application/x-www-form-urlencoded; charset=bogus", b"username=a"),
    ("application/json", b'{"username": "a"}'),
])
async def test_malformed_forms_get_400_not_500(broker, content_type, body):
    t = Technician(broker)
    try:
        async with t.http.post(broker.url + "/login", data=body,
                               headers={"Content-Type": content_type}) as r:
            assert r.status == 400
        assert "unhandled error" not in broker.log_text()
    finally:
        await t.close()
