"""Real processes and a scripted technician for integration tests.

``Broker`` runs ``tether-broker`` (the installed console script) on
127.0.0.1:0 with real TLS; ``Customer`` runs ``tether-client`` under pexpect
in a real PTY; ``Technician`` signs in to the console over HTTPS and uses
the same API and WebSockets as the browser page.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pexpect
import pyotp
from yarl import URL

#: every wait in the tests is a multiple of this, so a slow machine can scale it
T = float(os.environ.get("TETHER_TEST_TIMEOUT", "10"))
BIN = Path(sys.executable).parent
#: (data directory, user name) -> TOTP secret / last time step used to sign in
TOTP_SEEDS: dict[tuple[Path, str], str] = {}
TOTP_STEPS: dict[tuple[Path, str], int] = {}
#: (data directory, user name) -> the cookies of a login made by Technician.sign_in_once
LOGINS: dict[tuple[Path, str], Any] = {}


def script(name: str) -> str:
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name) or name


def run_cli(
    *args: str, input: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([script("tether-broker"), *args], input=input, text=True,
                          capture_output=True, timeout=6 * T, check=check)


class Broker:
    def __init__(self, data: Path, *extra: str) -> None:
        self.data = data
        self.extra = list(extra)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.log = data / "broker.log"

    def init(self) -> Broker:
        run_cli("init", "--data", str(self.data))
        return self

    def add_user(self, name: str, password: str, role: str = "technician",
                 display: str = "Alice Martin", org: str = "Acme IT") -> str:
        """Create an account; remembers its TOTP secret for :meth:`totp_code`."""
        out = run_cli("user", "add", "--role", role, f"--display-name={display}",
                      f"--org={org}", "--password-stdin", "--json", "--data", str(self.data),
                      "--", name, input=password + "\n")
        seed = str(json.loads(out.stdout)["totp_secret"])
        TOTP_SEEDS[(self.data, name)] = seed
        return seed

    async def totp_code(self, name: str) -> str:
        """A code for the next time step this account has not used yet. The broker takes
        each step once, and one step ahead of its clock; a third sign-in within one
        30-second step waits for the next step (tests use one account per test)."""
        seed = TOTP_SEEDS[(self.data, name)]
        step = max(int(time.time() // 30), TOTP_STEPS.get((self.data, name), 0) + 1)
        for _ in range(40):  # at most ~31 s
            if step <= int(time.time() // 30) + 1:
                break
            await asyncio.sleep(1)
        TOTP_STEPS[(self.data, name)] = step
        return str(pyotp.TOTP(seed).at(step * 30))

    def start_on(self, port: int) -> Broker:
        return self.start(f"127.0.0.1:{port}")

    def start(self, listen: str = "127.0.0.1:0") -> Broker:
        self._log_f = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [script("tether-broker"), "serve", "--data", str(self.data),
             "--listen", listen, *self.extra],
            stdout=subprocess.PIPE, stderr=self._log_f, text=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 3 * T
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.search(r"Listening on (https://\S+)", line)
            if m:
                self.url = m.group(1)
                return self
        raise RuntimeError("broker did not start: " + self.log.read_text()[-2000:])

    @property
    def ca(self) -> Path:
        return self.data / "certs" / "ca.pem"

    def stop(self) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(3 * T)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(T)
        if self.proc and self.proc.stdout:
            self.proc.stdout.close()
        if hasattr(self, "_log_f"):
            self._log_f.close()
        return self.proc.returncode if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class Customer:
    """``tether-client`` in a real PTY, driven like a person at the keyboard."""

    def __init__(self, broker: Broker, *extra: str, ca: Path | None = None,
                 url: str | None = None, tmp: Path | None = None) -> None:
        base = tmp or broker.data
        args = ["--broker", url or broker.url, "--ca", str(ca or broker.ca), "--allow-root",
                "--log", str(base / f"client-{id(self)}.log"), *extra]
        self.journal = Path(args[args.index("--log") + 1])
        # the customer's own home: their login shell reads its rc files from here, not
        # from the test runner's (whose pyenv start-up takes seconds under load)
        home = base / "home"
        home.mkdir(parents=True, exist_ok=True)
        self.child = pexpect.spawn(script("tether-client"), args, encoding="utf-8",
                                   codec_errors="replace", timeout=T, dimensions=(40, 120),
                                   env={**os.environ, "TERM": "xterm", "HOME": str(home)})

    def code(self) -> str:
        self.child.expect(r"Session code: (\d{3} \d{3} \d{3})")
        return self.child.match.group(1)

    def answer(self, prompt: str, yes: bool) -> None:
        self.child.expect(prompt)
        self.child.expect(r"\[y/N\] ")
        self.child.sendline("y" if yes else "n")

    def accept_session(self) -> None:
        self.answer("wants to start a remote support session", True)

    def accept_shell(self) -> None:
        self.answer("open a shell with full access", True)

    def end(self) -> int:
        self.child.sendintr()
        self.child.expect(pexpect.EOF, timeout=3 * T)
        self.child.close()
        return self.child.exitstatus if self.child.exitstatus is not None else -1

    def wait_exit(self) -> int:
        self.child.expect(pexpect.EOF, timeout=3 * T)
        self.child.close()
        return self.child.exitstatus if self.child.exitstatus is not None else -1

    def close(self) -> None:
        if self.child.isalive():
            self.child.kill(signal.SIGKILL)
        self.child.close(force=True)


class Technician:
    """The browser's side of the console, over real HTTPS and WSS."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.url = broker.url
        ctx = ssl.create_default_context(cafile=str(broker.ca))
        self.ssl = ctx
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            headers={"Origin": self.url},
        )
        self.csrf = ""
        self.last_path = ""

    async def close(self) -> None:
        await self.http.close()

    async def page(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.url + path) as r:
            text = await r.text()
            self.last_path = r.url.path
            m = re.search(r'name="csrf-token" content="([^"]+)"', text)
            if m:
                self.csrf = m.group(1)
            return r.status, text

    async def login(self, name: str, password: str, otp: str | None = None) -> tuple[int, str]:
        await self.page("/login")
        if otp is None:
            otp = await self.broker.totp_code(name)
        async with self.http.post(self.url + "/login", data={
            "username": name, "password": password, "otp": otp, "csrf": self.csrf}) as r:
            text = await r.text()
        await self.page("/dashboard")
        return r.status, text

    async def sign_in_once(self, name: str, password: str) -> None:
        """Sign in, or reuse the login this test run already has for ``name`` on this
        broker: each TOTP step works once, so modules that sign the same accounts in
        many times share one login instead of waiting for the next 30-second step."""
        key = (self.broker.data, name)
        cookies = LOGINS.get(key)
        if cookies is not None:
            self.http.cookie_jar.update_cookies(cookies, URL(self.url))
            status, _ = await self.page("/dashboard")
            if status == 200 and "/login" not in self.last_path:
                return
        status, _ = await self.login(name, password)
        assert status == 200 and "/login" not in self.last_path, name
        LOGINS[key] = self.http.cookie_jar.filter_cookies(URL(self.url))

    async def redeem(self, code: str) -> tuple[int, str, str]:
        """Returns (status, final path, page text)."""
        if not self.csrf:
            await self.page("/dashboard")
        async with self.http.post(self.url + "/sessions",
                                  data={"code": code, "csrf": self.csrf}) as r:
            return r.status, r.url.path, await r.text()

    async def session_id(self, code: str) -> str:
        status, path, text = await self.redeem(code)
        assert status == 200 and path.startswith("/sessions/"), (status, path, text[:500])
        await self.page(path)
        return path.rsplit("/", 1)[1]

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(method, self.url + path, json=body,
                                     headers={"X-CSRF-Token": self.csrf}) as r:
            try:
                return r.status, await r.json(content_type=None)
            except ValueError:
                return r.status, await r.text()

    async def state(self, sid: str) -> dict[str, Any]:
        status, body = await self.api("GET", f"/api/sessions/{sid}")
        assert status == 200, body
        return body

    async def wait_for(self, sid: str, pred: Any, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + 3 * T
        while time.monotonic() < deadline:
            s = await self.state(sid)
            if pred(s):
                return s
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}: {s}")

    async def open_shell(self, sid: str, cols: int = 80, rows: int = 24) -> str:
        status, body = await self.api("POST", f"/api/sessions/{sid}/channels",
                                      {"kind": "terminal", "cols": cols, "rows": rows})
        assert status == 202, body
        return body["channel"]["id"]

    async def attach(self, sid: str, cid: str) -> Viewer:
        status, body = await self.api("POST", f"/api/sessions/{sid}/channels/{cid}/attach")
        assert status == 200, body
        ws = await self.http.ws_connect(self.url.replace("https", "wss") + "/ws/relay/viewer",
                                        max_msg_size=0)
        await ws.send_str(json.dumps({"secret": body["secret"]}))
        return Viewer(ws)

    async def end(self, sid: str) -> tuple[int, Any]:
        return await self.api("POST", f"/api/sessions/{sid}/end")


class Viewer:
    """A terminal viewer WebSocket: collects output, sends keystrokes."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.output = bytearray()
        self.controls: list[dict[str, Any]] = []

    async def send(self, text: str) -> None:
        await self.ws.send_bytes(text.encode())

    async def resize(self, cols: int, rows: int) -> None:
        await self.ws.send_str(json.dumps({"type": "resize", "cols": cols, "rows": rows}))

    async def expect(self, pattern: str | bytes, timeout: float | None = None) -> re.Match[bytes]:
        rx = re.compile(pattern.encode() if isinstance(pattern, str) else pattern)
        deadline = time.monotonic() + (timeout or 3 * T)
        while True:
            m = rx.search(self.output)
            if m:
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen; got {bytes(self.output[-500:])!r}")
            try:
                msg = await self.ws.receive(timeout=left)
            except TimeoutError:
                continue
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.output += msg.data
            elif msg.type == aiohttp.WSMsgType.TEXT:
                self.controls.append(json.loads(msg.data))
            else:
                raise AssertionError(f"viewer closed ({self.ws.close_code}) before {pattern!r}; "
                                     f"got {bytes(self.output[-300:])!r}")

    async def closed(self, timeout: float | None = None) -> tuple[int | None, list[dict[str, Any]]]:
        deadline = time.monotonic() + (timeout or 3 * T)
        while time.monotonic() < deadline:
            try:
                msg = await self.ws.receive(timeout=deadline - time.monotonic())
            except TimeoutError:
                break
            if msg.type == aiohttp.WSMsgType.BINARY:
                self.output += msg.data
            elif msg.type == aiohttp.WSMsgType.TEXT:
                self.controls.append(json.loads(msg.data))
            elif msg.type == aiohttp.WSMsgType.CLOSE:
                return msg.data, self.controls  # the code the broker sent
            else:
                return self.ws.close_code, self.controls
        raise AssertionError("viewer not closed")
