"""Races a hostile (or merely unlucky) peer can win by timing alone.

Both were found by an attack pass against a real broker and fixed in the broker core;
they are kept here as attacks so they stay fixed:

* "Open shell" while the customer's connection is dropped (inside the resume window)
  used to answer 500 and leave the channel stuck in ``requested``, so every later
  "Open shell" of that session was refused as already being asked.
* A "yes" sent at the consent deadline used to start a recording that was never
  sealed, while the session's end listed it, so the session's bundle never verified.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import run_cli
from tests.security.conftest import Site
from tests.security.tools import FakeAgent, browser

pytestmark = pytest.mark.asyncio

CONSENT_WAIT = 0.4


@pytest.fixture(scope="module")
def site(start_broker: Callable[..., Site]) -> Site:
    return start_broker("--resume-window", "20", "--consent-wait", str(CONSENT_WAIT),
                        technician=3)


async def _active(site: Site, agent: FakeAgent) -> tuple[Any, str]:
    tech = await browser(site.broker, site.take()[0])
    code = await agent.code()
    sid = await tech.session_id(code)
    await agent.accept_session()
    await tech.wait_for(sid, lambda s: s["state"] == "active", "session consent")
    return tech, sid


async def test_open_shell_while_the_customer_is_away_is_a_clear_conflict(site: Site) -> None:
    agent = await FakeAgent(site.broker).connect()
    tech, sid = await _active(site, agent)
    try:
        token = await agent.next("resume_token")
        assert agent.ws is not None
        agent.ws.transport.abort()  # the customer's Wi-Fi drops: no close frame
        await tech.wait_for(sid, lambda s: not s.get("connected", True), "the drop")

        for _ in range(3):  # each try is refused the same way; none gets stuck
            status, body = await tech.api("POST", f"/api/sessions/{sid}/channels",
                                          {"kind": "terminal", "cols": 80, "rows": 24})
            assert status == 409, (status, body)
            assert "connection dropped" in str(body)

        back = await FakeAgent(site.broker).connect(
            {"type": "resume", "secret": token["secret"], "version": "sec", "os": "Linux"})
        await back.next("resumed")
        status, body = await tech.api("POST", f"/api/sessions/{sid}/channels",
                                      {"kind": "terminal", "cols": 80, "rows": 24})
        assert status == 202, (status, body)  # not "already being asked"
        cid, _ = await back.accept_channel()
        assert cid == body["channel"]["id"]
        await back.close()
    finally:
        await tech.close()


async def test_a_yes_at_the_consent_deadline_leaves_a_verifiable_bundle(
        site: Site, tmp_path: Path) -> None:
    """The customer's yes is sent at offsets from 60 ms before to 60 ms after the
    broker's consent deadline (loopback delays included); whichever way each race goes,
    every recording started is sealed and the session's bundle verifies."""
    agent = await FakeAgent(site.broker).connect()
    tech, sid = await _active(site, agent)
    try:
        outcomes: list[str] = []
        relays: list[Any] = []
        viewers: list[Any] = []
        for i in range(13):
            status, body = await tech.api("POST", f"/api/sessions/{sid}/channels",
                                          {"kind": "terminal", "cols": 80, "rows": 24})
            assert status == 202, (i, status, body)
            req = await agent.next("channel_request")
            await asyncio.sleep(CONSENT_WAIT - 0.06 + i * 0.01)
            await agent.send(type="channel_decision", channel=req["channel"], allow=True,
                             reason="yes")
            state = await tech.wait_for(
                sid, lambda s, c=req["channel"]: any(
                    ch["id"] == c and ch["state"] in ("pairing", "timeout", "closed")
                    for ch in s["channels"]), "the channel's outcome")
            outcomes.append(next(ch["state"] for ch in state["channels"]
                                 if ch["id"] == req["channel"]))
            if outcomes[-1] == "pairing":  # the yes won: both ends join, recording starts
                ready = await agent.next("channel_ready")
                relays.append(await agent.relay(ready["secret"]))
                viewers.append(await tech.attach(sid, req["channel"]))
        status, _ = await tech.end(sid)
        assert status in (200, 204), status
        await agent.closed()
        for relay in relays:
            await relay.close()
    finally:
        await tech.close()

    bundle = tmp_path / "race.zip"
    exported = run_cli("audit", "export", "--data", str(site.broker.data), "--session", sid,
                       "--out", str(bundle))
    fingerprint = exported.stdout.split("--key-fingerprint ")[1].split()[0]
    verified = run_cli("audit", "verify", "--bundle", str(bundle), "--key-fingerprint",
                       fingerprint, check=False)
    assert verified.returncode == 0, (outcomes, verified.stdout, verified.stderr)
    assert verified.stdout.startswith("OK"), verified.stdout
    # each yes that won started a recording; each is sealed and checked
    assert f" {outcomes.count('pairing')} recordings" in verified.stdout, (outcomes,
                                                                          verified.stdout)
