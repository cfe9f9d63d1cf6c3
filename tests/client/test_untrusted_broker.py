"""The broker is not trusted: a channel the customer did not allow never opens.

A fake broker (real TLS with a certificate from ``tether-broker init``) sends
what a compromised broker could: a channel request before the customer accepted
the session, a ``channel_ready`` for a channel nobody asked about, and a
malformed message. The real ``tether-client`` must refuse all of it.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from pathlib import Path

import pexpect
from aiohttp import web

from tests.helpers import T, run_cli, script
from tether.protocol import codes


async def fake_broker(data: Path, script_frames: list[str]):
    run_cli("init", "--data", str(data))
    seen: dict[str, list] = {"relay": [], "from_client": []}

    async def agent(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.receive()  # hello
        for frame in script_frames:
            await ws.send_str(frame)
        async for msg in ws:
            seen["from_client"].append(json.loads(msg.data))
        return ws

    async def relay(request: web.Request) -> web.WebSocketResponse:
        seen["relay"].append(request.path)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_bytes(b"id\r")
        await ws.receive()
        return ws

    app = web.Application()
    app.router.add_get("/ws/agent", agent)
    app.router.add_get("/ws/relay/agent", relay)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(data / "certs" / "broker.pem", data / "certs" / "broker-key.pem")
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"https://127.0.0.1:{port}", seen


def client(url: str, data: Path, tmp: Path) -> pexpect.spawn:
    return pexpect.spawn(script("tether-client"),
                         ["--broker", url, "--ca", str(data / "certs" / "ca.pem"),
                          "--allow-root", "--log", str(tmp / "c.log")],
                         encoding="utf-8", timeout=T,
                         env={"HOME": str(tmp), "PATH": "/usr/bin:/bin"})


async def test_unrequested_channels_are_refused_on_the_client(tmp_path):
    frames = [
        json.dumps({"type": "code", "code": codes.generate(), "expires_in": 600}),
        json.dumps({"type": "channel_request", "channel": "c_early", "kind": "terminal",
                    "technician": "Mallory", "org": "Evil"}),
        json.dumps({"type": "channel_ready", "channel": "c_evil", "secret": "s"}),
    ]
    runner, url, seen = await fake_broker(tmp_path / "d", frames)
    child = client(url, tmp_path / "d", tmp_path)
    try:
        await asyncio.to_thread(child.expect, "did not allow; refused")
        for _ in range(int(20 * T)):
            if seen["from_client"]:
                break
            await asyncio.sleep(0.05)
        assert seen["from_client"][0] == {"type": "channel_decision", "channel": "c_early",
                                          "allow": False, "reason": "no session"}
        await asyncio.sleep(0.5)
        assert seen["relay"] == []  # no shell was ever offered to the broker
        journal = [json.loads(x) for x in (tmp_path / "c.log").read_text().splitlines()]
        events = [e["event"] for e in journal]
        assert "refused_unasked" in events and "refused_unrequested" in events
        assert "channel_open" not in events
    finally:
        child.terminate(force=True)
        await runner.cleanup()


async def test_a_malformed_broker_message_ends_cleanly(tmp_path):
    frames = [json.dumps({"type": "claimed", "session": "s", "technician": "x"})]
    runner, url, _ = await fake_broker(tmp_path / "d", frames)
    child = client(url, tmp_path / "d", tmp_path)
    try:
        await asyncio.to_thread(child.expect, pexpect.EOF)
        child.close()
        assert "does not understand" in child.before
        assert "Traceback" not in child.before
        assert child.exitstatus == 4
    finally:
        child.terminate(force=True)
        await runner.cleanup()
