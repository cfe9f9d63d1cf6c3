"""No secret that was used in a session is left in any log or file (non-negotiable 4).

Issue: a test runs a full session and greps the server log, the access log, the
audit log, the recordings and the database for each secret that was used — the
password, the session code (with and without spaces), the session cookie, the
CSRF token, the relay and resume secrets, and each TOTP value as a whole token.

One session does everything a secret can travel through, including the
failure paths (where a careless error message would quote what it refused):
a sign-in with a TOTP value, a shell whose output is recorded, two viewer
attaches, a network drop that the client resumes with its resume secret, then
replays of every used secret (resume, both relay ends), wrong and reused codes,
and failed sign-ins (wrong password, a reused TOTP value).

How the secrets the technician never sees are observed: the client's resume
secret and its relay secret travel to the real ``tether-client`` inside TLS
that only the broker and the client can read, so the client runs with a
``sitecustomize`` that wraps ``tether.protocol.messages.parse`` and appends each
secret it parses to a file *outside* everything searched. The client itself is
unchanged: it is the real process, using the real secrets.

Searched: every file the broker writes in its data directory (``tether.db``
with its ``-wal``/``-shm`` taken while the broker runs and again after it
stopped, ``broker.log`` = server log and access log, ``audit-checkpoints.jsonl``,
every recording) except ``certs/`` (key material, not logs), and the client's
journal and home directory.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
from pathlib import Path

import aiohttp
import pytest

from tests.conftest import PASSWORD
from tests.e2e.test_resume import Cable
from tests.helpers import TOTP_SEEDS, Broker, Customer, T, Technician
from tether.protocol import codes

WRONG_PASSWORD = "wrong horse " + os.urandom(4).hex()

#: installed on the client's PYTHONPATH: records each secret the client parses
SPY = """
import json, os
from tether.protocol import messages as _m

_parse = _m.parse
_out = os.environ["TETHER_TEST_SECRET_SPY"]


def parse(text, allowed=None):
    msg = _parse(text, allowed)
    secret = getattr(msg, "secret", None)
    if isinstance(secret, str):
        with open(_out, "a") as f:
            f.write(json.dumps({"type": msg.type, "secret": secret}) + "\\n")
    return msg


_m.parse = parse
"""


@pytest.fixture
def broker_args() -> list[str]:
    return ["--pair-timeout", "5", "--consent-wait", "8", "--resume-window", "10"]


def spied_customer(broker: Broker, tmp: Path, spy: Path, url: str) -> Customer:
    site = tmp / "site"
    site.mkdir(parents=True)
    (site / "sitecustomize.py").write_text(SPY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(
            filter(None, [str(site), os.environ.get("PYTHONPATH")])))
        mp.setenv("TETHER_TEST_SECRET_SPY", str(spy))
        return Customer(broker, "--consent-timeout", "5", url=url, tmp=tmp / "customer")


def written_files(broker: Broker, customer: Customer) -> dict[Path, bytes]:
    """Every file the broker and the client wrote, but the broker's keys."""
    found: dict[Path, bytes] = {}
    certs = broker.data / "certs"
    for root in (broker.data, customer.journal.parent):
        for path in root.rglob("*"):
            if path.is_file() and certs not in path.parents:
                found[path] = path.read_bytes()
    return found


def whole_token(value: str) -> re.Pattern[bytes]:
    """``value`` as a token of its own: not part of a longer word, hex digest or number,
    nor the microsecond fraction of a timestamp (``…12.345678`` in recordings)."""
    return re.compile(rb"(?<![0-9A-Za-z_])(?<![0-9][.,])" + re.escape(value.encode())
                      + rb"(?![0-9A-Za-z_])")


def cookie(tech: Technician, name: str) -> str:
    return next(c.value for c in tech.http.cookie_jar if c.key == name)


async def refused(ws: aiohttp.ClientWebSocketResponse, first: str) -> int | None:
    await ws.send_str(first)
    msg = await ws.receive(timeout=3 * T)
    while msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
        msg = await ws.receive(timeout=3 * T)
    await ws.close()
    return ws.close_code


async def test_a_full_session_leaves_no_secret_behind(broker: Broker, customers, tmp_path):
    secrets: dict[str, str] = {"password": PASSWORD, "wrong password": WRONG_PASSWORD}
    totps: dict[str, str] = {}
    seed = TOTP_SEEDS[(broker.data, "alice")]
    secrets["TOTP secret"] = seed

    cable = Cable(int(broker.url.rsplit(":", 1)[1]))
    spy = tmp_path / "spy.jsonl"
    customer = spied_customer(broker, tmp_path, spy, f"https://127.0.0.1:{cable.port}")
    customers.append(customer)
    tech = Technician(broker)
    try:
        # --- sign in: pre-login cookie and CSRF token, password, a TOTP value
        await tech.page("/login")
        secrets["pre-login cookie"] = cookie(tech, "__Host-tether-pre")
        secrets["pre-login CSRF token"] = tech.csrf
        totps["TOTP used"] = otp = await broker.totp_code("alice")
        async with tech.http.post(broker.url + "/login", data={
                "username": "alice", "password": PASSWORD, "otp": otp, "csrf": tech.csrf}) as r:
            assert r.status == 200 and "/login" not in r.url.path, await r.text()
        await tech.page("/dashboard")
        secrets["session cookie"] = cookie(tech, "__Host-tether")
        secrets["CSRF token"] = tech.csrf

        # --- a session with a recorded shell, attached twice (each attach: a new secret)
        code = await asyncio.to_thread(customer.code)
        digits = code.replace(" ", "")
        secrets |= {"code": code, "code digits": digits,
                    "code with dashes": f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"}
        sid = await tech.session_id(code)
        await asyncio.to_thread(customer.accept_session)
        await tech.wait_for(sid, lambda s: s["state"] == "active", "active")
        cid = await tech.open_shell(sid)
        await asyncio.to_thread(customer.accept_shell)
        await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "pairing", "pairing")
        viewer_secrets = []
        for _ in range(2):
            status, body = await tech.api("POST", f"/api/sessions/{sid}/channels/{cid}/attach")
            assert status == 200, body
            viewer_secrets.append(body["secret"])
        secrets["viewer secret (replaced)"], secrets["viewer secret"] = viewer_secrets
        ws = await tech.http.ws_connect(broker.url.replace("https", "wss") + "/ws/relay/viewer")
        await ws.send_str(json.dumps({"secret": viewer_secrets[1]}))
        await ws.send_bytes(b"echo done-$((6*7))\r")
        seen = b""
        while b"done-42" not in seen:
            msg = await ws.receive(timeout=3 * T)
            assert msg.type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT), msg
            if msg.type == aiohttp.WSMsgType.BINARY:
                seen += msg.data

        # --- a short drop: the client comes back with its resume secret
        cable.unplug()
        await tech.wait_for(sid, lambda s: not s["connected"], "the client gone")
        await asyncio.sleep(0.3)
        cable.plugged = True
        await asyncio.to_thread(customer.child.expect, "Reconnected: the session with")
        await tech.wait_for(sid, lambda s: s["connected"], "the client back")
        await ws.close()

        # what the client was given: two resume secrets (before and after) and a relay secret
        parsed = [json.loads(line) for line in spy.read_text().splitlines()]
        resume = [p["secret"] for p in parsed if p["type"] == "resume_token"]
        relay = [p["secret"] for p in parsed if p["type"] == "channel_ready"]
        assert len(resume) == 2 and len(relay) == 1, parsed
        secrets |= {"resume secret (used)": resume[0], "resume secret": resume[1],
                    "client relay secret": relay[0]}

        # --- every used secret replayed: refused, and the refusal must not quote it
        ctx = ssl.create_default_context(cafile=str(broker.ca))
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as raw:
            wss = broker.url.replace("https", "wss")
            closed = await refused(await raw.ws_connect(wss + "/ws/agent"), json.dumps(
                {"type": "resume", "secret": resume[0], "version": "0", "os": "Linux"}))
            assert closed is not None and closed >= 4000, closed
            closed = await refused(await raw.ws_connect(wss + "/ws/relay/agent"),
                                   json.dumps({"secret": relay[0]}))
            assert closed is not None and closed >= 4000, closed
        for used in viewer_secrets:
            closed = await refused(await tech.http.ws_connect(wss + "/ws/relay/viewer"),
                                   json.dumps({"secret": used}))
            assert closed is not None and closed >= 4000, closed
        # a used code, and a well-formed code that was never issued, in all spellings
        wrong = codes.generate()
        secrets |= {"wrong code": codes.format_code(wrong), "wrong code digits": wrong,
                    "wrong code with dashes": codes.format_code(wrong).replace(" ", "-")}
        for typed in (code, digits, secrets["code with dashes"], *[secrets[k] for k in (
                "wrong code", "wrong code digits", "wrong code with dashes")]):
            status, landed, _ = await tech.redeem(typed)
            assert not landed.startswith("/sessions/"), (typed, status, landed)

        status, _ = await tech.end(sid)
        assert status == 200
        assert await asyncio.to_thread(customer.wait_exit) == 0

        # --- failed sign-ins: a wrong password (and a wrong code), a reused TOTP value
        totps["TOTP wrong"] = f"{(int(otp) + 500_000) % 1_000_000:06d}"
        for password, typed in ((WRONG_PASSWORD, totps["TOTP wrong"]), (PASSWORD, otp)):
            other = Technician(broker)
            try:
                await other.login("alice", password, otp=typed)
                assert "/login" in other.last_path, "a failed sign-in got in"
            finally:
                await other.close()
    finally:
        await tech.close()
        cable.close()

    # --- search, while the broker still runs (the WAL holds the latest pages) and after
    running = written_files(broker, customer)
    assert broker.stop() == 0
    stopped = written_files(broker, customer)
    names = {p.name for p in {**running, **stopped}}
    assert {"tether.db", "broker.log", "audit-checkpoints.jsonl", f"{cid}.cast",
            customer.journal.name} <= names, names
    assert any(n.endswith("-wal") for n in names), names
    # the search itself works: what is not secret is there to be found
    everything = b"".join([*running.values(), *stopped.values()])
    for visible in (sid, cid, "done-42", "session.resumed", '"event": "resumed"'):
        assert visible.encode() in everything, visible
    assert b'"status": 200' in stopped[broker.log] or b'"status":200' in stopped[broker.log]

    leaks = []
    for files in (running, stopped):
        for path, data in files.items():
            for what, secret in secrets.items():
                if secret.encode() in data:
                    leaks.append(f"{what} in {path.relative_to(tmp_path)}")
            for what, value in totps.items():
                for m in whole_token(value).finditer(data):
                    context = data[max(0, m.start() - 40):m.end() + 40]
                    leaks.append(f"{what} {value} in {path.relative_to(tmp_path)}: {context!r}")
    assert not leaks, "secrets found:\n" + "\n".join(sorted(set(leaks)))
