"""Attacks below the application: compressed and malformed WebSocket frames, slowloris.

Frames are written by hand over TLS (:func:`tools.frame`), since a WebSocket library
will not send a frame that breaks the protocol. The broker negotiates no compression
(DESIGN.md: it wastes CPU on floods and lets chosen text leak secrets beside it), so a
frame marked compressed is a protocol error, however far it would inflate.
"""

from __future__ import annotations

import asyncio
import json
import resource
import time
import zlib
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.client import connect

from tests.helpers import Broker, T
from tests.security.conftest import Site
from tests.security.tools import (
    FakeAgent,
    browser,
    closed_with,
    frame,
    port_of,
    raw_http,
    raw_ws,
    read_close,
    session_cookie,
    shell_session,
    tls,
    tls_stream,
    wss,
)

TEXT, BINARY, CONTINUATION, CLOSE, PING = 0x1, 0x2, 0x0, 0x8, 0x9
DEFLATE_OFFER = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"


@pytest.fixture(scope="module")
def site(start_broker) -> Site:
    return start_broker("--pair-timeout", "5", "--consent-wait", "8",
                        "--new-codes-per-ip", "50", technician=3)


@pytest.fixture
def broker(site: Site) -> Broker:
    return site.broker


def deflate_bomb(size: int) -> bytes:
    """A permessage-deflate payload (raw DEFLATE, no trailer) that inflates to ``size``
    bytes of JSON-looking text."""
    body = b'{"type":"heartbeat","pad":"' + b"A" * size + b'"}'
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = squeeze.compress(body) + squeeze.flush(zlib.Z_SYNC_FLUSH)
    return data[:-4]  # RFC 7692: the 00 00 ff ff tail is left off


async def hello_first(writer: asyncio.StreamWriter) -> None:
    writer.write(frame(TEXT, json.dumps({"type": "hello", "version": "x", "os": "x"}).encode()))
    await writer.drain()


async def test_compression_is_not_negotiated_and_a_compressed_frame_is_refused(site, broker):
    """The attacker offers permessage-deflate on every socket: the broker answers
    without the extension. Then it sends a frame marked compressed (RSV1) whose 2 KB
    would inflate to 32 MiB, past every limit: the broker does not inflate it but closes
    with 1002 (protocol error), on the client's control socket, the relay's client end,
    the terminal viewer and the live socket alike, and keeps serving."""
    name, = site.take()
    tech = await browser(broker, name, "127.0.40.1")
    cookie = f"Cookie: __Host-tether={session_cookie(tech)}\r\nOrigin: {broker.url}\r\n"
    bomb = deflate_bomb(32 << 20)
    assert len(bomb) < 64 * 1024
    try:
        for path, extra in (("/ws/agent", ""), ("/ws/relay/agent", ""),
                            ("/ws/relay/viewer", cookie), ("/ws/live", cookie)):
            reader, writer, head = await raw_ws(broker, path, DEFLATE_OFFER + extra)
            try:
                assert head.startswith("HTTP/1.1 101"), (path, head)
                assert "sec-websocket-extensions" not in head.lower(), (path, head)
                if path == "/ws/agent":
                    await hello_first(writer)
                writer.write(frame(TEXT, bomb, rsv1=True))
                await writer.drain()
                code, _ = await read_close(reader)
                assert code == 1002, (path, code)
            finally:
                writer.close()
        # a real WebSocket client that asks for deflate gets none either
        ws = await connect(wss(broker, "/ws/agent"), ssl=tls(broker), compression="deflate",
                           open_timeout=T)
        assert ws.protocol.extensions == []
        await ws.close()
        status, _, _ = await raw_http(broker, "GET /login HTTP/1.1\r\nHost: x")
        assert status == 200 and broker.alive()
    finally:
        await tech.close()


MALFORMED = [  # (what, frames after the hello, close codes that are right)
    ("reserved opcode 3", [frame(0x3, b"x")], {1002}),
    ("reserved opcode 0xB", [frame(0xB, b"x")], {1002}),
    ("RSV2 set", [bytes([0xA1]) + frame(TEXT, b"{}")[1:]], {1002}),
    ("fragmented ping", [frame(PING, b"x", fin=False)], {1002}),
    ("ping over 125 bytes", [frame(PING, b"p" * 126)], {1002}),
    ("continuation with nothing to continue", [frame(CONTINUATION, b"x")], {1002}),
    ("new message inside a fragmented one",
     [frame(TEXT, b'{"type":', fin=False), frame(TEXT, b'"heartbeat"}')], {1002}),
    ("invalid UTF-8 text", [frame(TEXT, b'{"type":"\xff\xfe"}')], {1007}),
    ("close with code 999", [frame(CLOSE, (999).to_bytes(2, "big"))], {1002}),
    ("close with a 1-byte body", [frame(CLOSE, b"\x03")], {1002}),
    ("length field of 2**62", [bytes([0x81, 0xFF]) + (1 << 62).to_bytes(8, "big")], {1009}),
    ("fragments that add up past 64 KiB",
     [frame(TEXT, b"[" + b" " * 40000, fin=False), frame(CONTINUATION, b" " * 40000)], {1009}),
]


@pytest.mark.parametrize("what, frames, codes", MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_frames_close_only_that_connection(broker, what, frames, codes):
    """Frames that break RFC 6455 -- reserved opcodes and bits, fragmented or
    oversized control frames, orphan continuations, invalid UTF-8, bad close frames, a
    length field of 2**62, fragments adding up past the limit -- close that one control
    connection with the right code, and the broker goes on serving."""
    reader, writer, head = await raw_ws(broker, "/ws/agent")
    try:
        assert head.startswith("HTTP/1.1 101")
        await hello_first(writer)
        for f in frames:
            writer.write(f)
        await writer.drain()
        code, _ = await read_close(reader)
        assert code in codes, (what, code)
    finally:
        writer.close()
    status, _, _ = await raw_http(broker, "GET /login HTTP/1.1\r\nHost: x")
    assert status == 200


async def test_forwarded_for_does_not_lift_the_live_code_limit_of_an_address(broker):
    """A script opens client connections from one address, each claiming another
    address in X-Forwarded-For / Forwarded / X-Real-IP (no trusted proxy is
    configured): after the 10 clients an address may have waiting with a code, the next
    is told the broker is busy (4503), while a client at a really different address
    still gets its code."""
    held = []
    try:
        for i in range(11):
            fake = f"198.51.100.{i + 1}"
            ws = await connect(wss(broker, "/ws/agent"), ssl=tls(broker), compression=None,
                               open_timeout=T, local_addr=("127.0.43.1", 0),
                               additional_headers={"X-Forwarded-For": fake, "X-Real-IP": fake,
                                                   "Forwarded": f"for={fake}"})
            held.append(ws)
            await ws.send(json.dumps({"type": "hello", "version": "x", "os": "x"}))
            if i < 10:
                assert json.loads(await asyncio.wait_for(ws.recv(), T))["type"] == "code"
            else:
                code, reason = await closed_with(ws)
                assert code == 4503 and "too many" in reason, (code, reason)
        elsewhere = await FakeAgent(broker, "127.0.43.2").connect()
        try:
            assert len(await elsewhere.code()) == 9
        finally:
            await elsewhere.close()
    finally:
        for ws in held:
            await ws.close()


# --- slowloris ---------------------------------------------------------------------------


Opener = Callable[[], Awaitable[asyncio.StreamWriter]]


def openers(broker: Broker, ip: str) -> dict[str, Opener]:
    port = port_of(broker)

    async def tcp_only() -> asyncio.StreamWriter:  # never starts TLS
        _, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0))
        return w

    async def half_hello() -> asyncio.StreamWriter:  # a TLS record header, then silence
        _, w = await asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0))
        w.write(bytes.fromhex("16030102000100"))
        await w.drain()
        return w

    async def tls_idle() -> asyncio.StreamWriter:  # TLS done, no request
        _, w = await tls_stream(broker, ip)
        return w

    async def half_request() -> asyncio.StreamWriter:  # a request head that never ends
        _, w = await tls_stream(broker, ip)
        w.write(b"GET /login HTTP/1.1\r\nHost: x\r\nX-a: ")
        await w.drain()
        return w

    async def ws_silent() -> asyncio.StreamWriter:  # upgraded, never says hello
        _, w, _ = await raw_ws(broker, "/ws/agent", ip=ip)
        return w

    return {"tcp": tcp_only, "half hello": half_hello, "tls idle": tls_idle,
            "half request": half_request, "silent websocket": ws_silent}


async def hold(opener: Opener, n: int) -> list[asyncio.StreamWriter]:
    held: list[asyncio.StreamWriter] = []

    async def one() -> None:
        try:
            held.append(await asyncio.wait_for(opener(), T))
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            pass

    for start in range(0, n, 50):  # in batches: the attacker's own machine has limits too
        await asyncio.gather(*(one() for _ in range(min(50, n - start))))
    return held


async def legit_request(broker: Broker) -> float:
    started = time.monotonic()
    status, _, _ = await raw_http(broker, "GET /login HTTP/1.1\r\nHost: x")
    assert status == 200
    return time.monotonic() - started


async def test_many_half_open_connections_do_not_starve_others(site, broker):
    """From one address the attacker holds 300 connections that never finish: TCP with
    no TLS, half a TLS hello, TLS with no request, a request head that never ends, and
    WebSockets that never say hello. Meanwhile a technician's page loads in well under
    a second, a new client gets a code, and an open shell keeps relaying."""
    name, = site.take()
    tech = await browser(broker, name, "127.0.41.1")
    agent = await FakeAgent(broker, "127.0.41.2").connect()
    held: list[asyncio.StreamWriter] = []
    try:
        sid, cid, secret = await shell_session(tech, agent)
        relay = await agent.relay(secret)
        viewer = await tech.attach(sid, cid)
        for opener in openers(broker, "127.0.41.66").values():
            held += await hold(opener, 60)
        assert len(held) >= 250, len(held)
        assert await legit_request(broker) < 1.0
        newcomer = await FakeAgent(broker, "127.0.41.3").connect()
        try:
            assert len(await newcomer.code()) == 9
        finally:
            await newcomer.close()
        await relay.send(b"still-relaying\r\n")
        await viewer.expect("still-relaying", timeout=T)
    finally:
        for w in held:
            w.close()
        await agent.close()
        await tech.close()
    assert broker.alive()


async def test_one_address_cannot_use_up_the_brokers_connections(start_broker):
    """Slowloris proper: a broker that, like a service under a default limit, may hold a
    limited number of open files (here 256), and one attacking address that opens idle
    TLS connections until it can open no more and keeps them. A technician from another
    address must still be served -- the broker has to cap what one address may hold (or
    drop connections that send no request), not hand every slot to the first comer. It
    must also be serving normally once the attacker lets go."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:  # the broker process inherits the limit; this process gets its own back at once
        broker = start_broker().broker
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    held = await hold(openers(broker, "127.0.42.66")["tls idle"], 300)
    try:
        try:
            served = await asyncio.wait_for(legit_request(broker), T)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            raise AssertionError(
                f"with {len(held)} idle TLS connections held by one address, another"
                f" address is not served: {exc!r}") from None
        assert served < T
    finally:
        for w in held:
            w.close()
    await asyncio.sleep(0.3)
    assert await legit_request(broker) < 1.0 and broker.alive()
