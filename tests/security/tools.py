"""What the attack suite uses to talk to a real broker like an attacker would.

* :class:`Browser` is :class:`tests.helpers.Technician` (the console's own HTTPS
  and WSS calls) whose TCP connections leave from a chosen loopback address.
  Linux routes all of 127.0.0.0/8 to ``lo``, so binding the client socket to
  127.0.0.2, 127.0.0.3, ... makes the broker see a different peer address: a
  real "second machine", not a header the attacker typed.
* :class:`FakeAgent` speaks the client's control protocol on ``/ws/agent``
  (hello, decisions, relay secret) without a PTY: a cheap customer for the tests
  that need codes or a session, and an attacker's own client where that is the
  attack.
* :func:`raw_http` sends exact bytes over TLS, for paths and frames that an HTTP
  library would normalise or refuse to send.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import secrets
import ssl
import time
from typing import Any

import aiohttp
import pyotp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.helpers import TOTP_SEEDS, Broker, T, Technician

PASSWORD = "sec-" + secrets.token_hex(8)


def wss(broker: Broker, path: str) -> str:
    return broker.url.replace("https://", "wss://") + path


def tls(broker: Broker) -> ssl.SSLContext:
    """Trusts the test broker's CA only (as every real peer does)."""
    return ssl.create_default_context(cafile=str(broker.ca))


def port_of(broker: Broker) -> int:
    return int(broker.url.rsplit(":", 1)[1])


_names = iter(range(10**6))


def fresh(prefix: str) -> str:
    """A user name no other test of this run has used (each TOTP step works once)."""
    return f"{prefix}{next(_names)}-{secrets.token_hex(2)}"


def totp_now(broker: Broker, name: str, offset_steps: int = 0) -> str:
    """The current TOTP value of ``name``'s secret (no bookkeeping of used steps)."""
    seed = TOTP_SEEDS[(broker.data, name)]
    return str(pyotp.TOTP(seed).at(time.time() + 30 * offset_steps))


class Browser(Technician):
    """A console user whose connections come from ``ip`` (a 127/8 address)."""

    def __init__(self, broker: Broker, ip: str = "127.0.0.1",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(broker)
        self.ip = ip
        self.http.detach()  # replaced below by one bound to ``ip``; nothing was opened
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.ssl, local_addr=(ip, 0)),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Origin": self.url, **(headers or {})},
        )

    @property
    def cookies(self) -> dict[str, str]:
        return {c.key: c.value for c in self.http.cookie_jar}

    async def signed_in(self, name: str) -> Browser:
        status, _ = await self.login(name, PASSWORD)
        assert status == 200 and "/login" not in self.last_path, (name, self.last_path)
        return self

    async def try_login(self, name: str, password: str, otp: str = "000000",
                        extra: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
        """One sign-in attempt with a fresh form token: (status, page, headers)."""
        await self.page("/login")
        async with self.http.post(self.url + "/login", allow_redirects=False, headers=extra,
                                  data={"username": name, "password": password, "otp": otp,
                                        "csrf": self.csrf}) as r:
            return r.status, await r.text(), dict(r.headers)

    async def post(self, path: str, data: dict[str, str] | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, str]:
        async with self.http.post(self.url + path, data=data or {}, headers=headers,
                                  allow_redirects=False) as r:
            return r.status, await r.text()

    async def redeem_raw(self, code: str,
                         headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        """POST /sessions without following the redirect: (status, Location, body)."""
        if not self.csrf:
            await self.page("/dashboard")
        async with self.http.post(self.url + "/sessions", allow_redirects=False, headers=headers,
                                  data={"code": code, "csrf": self.csrf}) as r:
            return r.status, r.headers.get("Location", ""), await r.text()


async def browser(broker: Broker, name: str, ip: str = "127.0.0.1") -> Browser:
    return await Browser(broker, ip).signed_in(name)


class FakeAgent:
    """The customer's control connection, spoken by hand (no PTY, no prompts)."""

    def __init__(self, broker: Broker, ip: str = "127.0.0.1") -> None:
        self.broker = broker
        self.ip = ip
        self.ws: ClientConnection | None = None
        self.seen: list[dict[str, Any]] = []

    async def connect(self, hello: dict[str, Any] | None = None) -> FakeAgent:
        self.ws = await connect(wss(self.broker, "/ws/agent"), ssl=tls(self.broker),
                                compression=None, open_timeout=T, local_addr=(self.ip, 0),
                                max_size=None)
        await self.ws.send(json.dumps(hello or {"type": "hello", "version": "sec", "os": "Linux"}))
        return self

    async def send(self, **msg: Any) -> None:
        assert self.ws is not None
        await self.ws.send(json.dumps(msg))

    async def next(self, kind: str, timeout: float | None = None) -> dict[str, Any]:
        """The next message of type ``kind`` (others are kept in ``seen``)."""
        assert self.ws is not None
        deadline = time.monotonic() + (timeout or 2 * T)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind!r} from the broker; saw {self.seen[-5:]}")
            raw = await asyncio.wait_for(self.ws.recv(), left)
            msg = json.loads(raw)
            self.seen.append(msg)
            if msg["type"] == kind:
                return msg

    async def code(self) -> str:
        return str((await self.next("code"))["code"])

    async def accept_session(self) -> None:
        await self.next("claimed")
        await self.send(type="session_decision", allow=True, reason="yes", machine="victim-pc",
                        user="victim", os="Linux")

    async def accept_channel(self) -> tuple[str, str]:
        """Says yes to the next channel request; returns (channel id, relay secret)."""
        req = await self.next("channel_request")
        await self.send(type="channel_decision", channel=req["channel"], allow=True,
                        reason="yes")
        ready = await self.next("channel_ready")
        return str(ready["channel"]), str(ready["secret"])

    async def relay(self, secret: str) -> ClientConnection:
        ws = await connect(wss(self.broker, "/ws/relay/agent"), ssl=tls(self.broker),
                           compression=None, open_timeout=T, local_addr=(self.ip, 0),
                           max_size=None)
        await ws.send(json.dumps({"secret": secret}))
        return ws

    async def closed(self, timeout: float | None = None) -> tuple[int, str]:
        """Reads until the broker closes the control connection: (code, reason)."""
        assert self.ws is not None
        try:
            async with asyncio.timeout(timeout or 2 * T):
                while True:
                    self.seen.append(json.loads(await self.ws.recv()))
        except ConnectionClosed as exc:
            return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()


async def closed_with(ws: ClientConnection, *frames: str | bytes,
                      timeout: float | None = None) -> tuple[int, str]:
    """Sends ``frames``, then reads until the broker closes: (close code, reason)."""
    try:
        async with asyncio.timeout(timeout or 2 * T):
            for frame in frames:
                await ws.send(frame)
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
    raise AssertionError("unreachable")


async def shell_session(tech: Browser, agent: FakeAgent) -> tuple[str, str, str]:
    """A live session with a shell channel the (fake) customer allowed and whose client
    end is connected: (session id, channel id, client relay secret)."""
    code = await agent.code()
    sid = await tech.session_id(code)
    await agent.accept_session()
    await tech.wait_for(sid, lambda s: s["state"] == "active", "session consent")
    status, body = await tech.api("POST", f"/api/sessions/{sid}/channels",
                                  {"kind": "terminal", "cols": 80, "rows": 24})
    assert status == 202, body
    cid, secret = await agent.accept_channel()
    assert cid == body["channel"]["id"]
    return sid, cid, secret


def flood_address(n: int) -> str:
    """The n-th source address of a flood: 127.60.0.1, 127.60.0.2, ... (all of 127/8 is
    loopback on Linux; other tests use 127.0.x.y)."""
    return f"127.{60 + n // 65024}.{(n // 254) % 256}.{1 + n % 254}"


async def sign_in_flood(broker: Broker, stop: asyncio.Event, seen: dict[str, int], *,
                        concurrency: int = 150, per_address: int = 4) -> None:
    """Wrong sign-ins for names that do not exist, ``concurrency`` at a time, each address
    trying ``per_address`` times (under the 5 free failures per address) before the next
    one takes over, until ``stop`` is set. Every try that gets through costs the broker an
    argon2 check. ``seen`` counts the answers: "busy", "slowed" (429 by a delay), "wrong"."""
    url = broker.url
    addresses = iter(range(10**6))

    async def worker() -> None:
        while not stop.is_set():
            async with aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(ssl=tls(broker),
                                                   local_addr=(flood_address(next(addresses)), 0)),
                    cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Origin": url}) as http:
                try:
                    async with http.get(url + "/login") as r:
                        found = re.search(r'name="csrf-token" content="([^"]+)"', await r.text())
                    assert found, "no sign-in form"
                    for _ in range(per_address):
                        if stop.is_set():
                            return
                        async with http.post(url + "/login", allow_redirects=False, data={
                                "username": "nobody-" + secrets.token_hex(6), "otp": "123456",
                                "password": secrets.token_hex(8), "csrf": found.group(1)}) as r:
                            body = await r.text()
                        kind = ("busy" if "busy" in body else "slowed") if r.status == 429 \
                            else "wrong" if r.status == 401 else str(r.status)
                        seen[kind] = seen.get(kind, 0) + 1
                except (aiohttp.ClientError, OSError) as exc:
                    kind = type(exc).__name__
                    seen[kind] = seen.get(kind, 0) + 1
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


# --- raw TLS --------------------------------------------------------------------------------


async def tls_stream(broker: Broker, ip: str = "127.0.0.1"
                     ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.wait_for(asyncio.open_connection(
        "127.0.0.1", port_of(broker), ssl=tls(broker), server_hostname="127.0.0.1",
        local_addr=(ip, 0)), T)


async def raw_http(broker: Broker, head: str, body: bytes = b"",
                   ip: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    """Sends one request exactly as written (``head`` without the final blank line);
    returns (status, headers with lower-case names, body)."""
    reader, writer = await tls_stream(broker, ip)
    try:
        writer.write(head.encode("latin-1") + b"\r\nConnection: close\r\n\r\n" + body)
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 2 * T)
    finally:
        writer.close()
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
    return status, headers, rest


def ws_key() -> str:
    return base64.b64encode(os.urandom(16)).decode()


def frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False,
          mask: bool = True) -> bytes:
    """One WebSocket frame as a client would send it (masked unless told otherwise)."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        head = bytes([first, (0x80 if mask else 0) | n])
    elif n < 65536:
        head = bytes([first, (0x80 if mask else 0) | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, (0x80 if mask else 0) | 127]) + n.to_bytes(8, "big")
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


async def raw_ws(broker: Broker, path: str, extra_headers: str = "",
                 ip: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter,
                                                 str]:
    """A WebSocket upgrade done by hand: (reader, writer, response head)."""
    reader, writer = await tls_stream(broker, ip)
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port_of(broker)}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {ws_key()}\r\nSec-WebSocket-Version: 13\r\n"
                  f"{extra_headers}\r\n").encode("latin-1"))
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
    return reader, writer, head.decode("latin-1")


async def read_close(reader: asyncio.StreamReader,
                     timeout: float | None = None) -> tuple[int | None, bytes]:
    """Reads server frames until a close frame: (its code, its reason); (None, b"") if
    the connection ended without one."""
    try:
        async with asyncio.timeout(timeout or 2 * T):
            while True:
                b0, b1 = await reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    n = int.from_bytes(await reader.readexactly(2), "big")
                elif n == 127:
                    n = int.from_bytes(await reader.readexactly(8), "big")
                payload = await reader.readexactly(n)
                if b0 & 0x0F == 0x8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                    return code, payload[2:]
    except (asyncio.IncompleteReadError, ConnectionError):
        return None, b""


def session_cookie(b: Browser) -> str:
    return b.cookies.get("__Host-tether", "")
