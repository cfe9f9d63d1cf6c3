"""The session core, in memory: lifecycle, consent races, refusals, revocation, failing closed.

Real core, real audit log on a temporary SQLite store, real recordings on
disk; the client and both channel ends are fakes (``harness.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tether.broker.core import Gone
from tether.protocol import messages as m
from tether.protocol.consent import MAX_REFUSALS
from tether.protocol.errors import AuditUnavailable, AuthError, BadCode, Conflict, NotFound

from .harness import ADMIN, ALICE, MALLORY, FakeClient, FakeEnd, Harness, close, make, until


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await make(tmp_path)
    try:
        yield harness
    finally:
        await close(harness)


def recording(h: Harness, session_id: str, cid: str) -> Path:
    return h.data / "recordings" / session_id / f"{cid}.cast"


# --- the whole lifecycle ------------------------------------------------------------------


async def test_a_support_session_from_code_to_end(h: Harness) -> None:
    client, session = await h.session()
    assert session.state == "active" and session.customer == {
        "machine": "bob-laptop", "os": "Linux", "user": "bob"}
    cid, agent_end, viewer_end = await h.open(client, session)

    agent_end.incoming.put_nowait(b"$ ")
    assert await viewer_end.output(b"$ ")
    viewer_end.incoming.put_nowait(b"ls\r")
    assert await agent_end.received() == b"ls\r"
    viewer_end.incoming.put_nowait(json.dumps({"type": "resize", "cols": 132, "rows": 43}))
    assert json.loads(await agent_end.received()) == {"type": "resize", "cols": 132, "rows": 43}

    await h.core.end_session(ALICE, session, "127.0.0.1")
    assert (await client.expect(m.Ended)).reason == "ended by Alice Martin"
    assert session.state == "ended" and session.channels[cid].state == "closed"
    assert viewer_end.closed is not None and agent_end.closed is not None
    actions = await h.actions(session.id)
    for step in ("session.claimed", "session.consented", "channel.requested",
                 "channel.consented", "recording.started", "channel.agent_connected",
                 "channel.viewer_attached", "channel.opened", "session.ended",
                 "channel.closed", "recording.sealed"):
        assert step in actions, step
    assert actions.index("recording.started") < actions.index("channel.opened")
    sealed = [e for e in await h.events() if e["action"] == "recording.sealed"][0]
    data = recording(h, session.id, cid).read_bytes()
    assert sealed["detail"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert sealed["detail"]["bytes"] == len(data)
    events = [json.loads(line) for line in data.decode().splitlines()[1:]]
    assert ["o", "$ "] in [e[1:] for e in events] and ["i", "ls\r"] in [e[1:] for e in events]


async def test_a_wrong_code_costs_an_attempt_and_a_typo_does_not(h: Harness) -> None:
    _, code = await h.connect()
    wrong = code[:-2] + ("00" if code[-2:] != "00" else "11")
    with pytest.raises(BadCode):
        await h.core.redeem(ALICE, wrong, "127.0.0.1")
    session = await h.core.redeem(ALICE, code, "127.0.0.1")
    assert session.state == "claimed"
    with pytest.raises(BadCode):  # single use
        await h.core.redeem(ALICE, code, "127.0.0.1")


async def test_others_sessions_are_not_found_and_admins_see_them(h: Harness) -> None:
    _, session = await h.session()
    with pytest.raises(NotFound):
        h.core.session_for(MALLORY, session.id)
    assert h.core.session_for(ADMIN, session.id) is session
    assert h.core.sessions_for(MALLORY) == [] and h.core.sessions_for(ALICE) == [session]


async def test_both_sides_ending_at_once_end_it_once(h: Harness) -> None:
    client, session = await h.session()
    await asyncio.gather(
        h.core.end_session(ALICE, session, "127.0.0.1"),
        h.core.client_message(client.agent, m.EndSession(reason="done")))
    assert (await h.actions(session.id)).count("session.ended") == 1


# --- consent --------------------------------------------------------------------------------


async def test_refusals_count_and_after_three_the_customer_is_not_asked(h: Harness) -> None:
    client, session = await h.session()
    for _ in range(MAX_REFUSALS):
        cid, _ = await h.ask(client, session, allow=False)
        assert session.channels[cid].state == "refused"
        assert session.channels[cid].reason == "the customer said no"
    channel = await h.core.request_channel(ALICE, session, "terminal", 80, 24, "127.0.0.1")
    assert channel.state == "refused" and "3 times" in (channel.reason or "")
    assert not [x for x in client.pending() if isinstance(x, m.ChannelRequest)]


async def test_a_second_request_while_the_customer_is_asked_is_a_conflict(h: Harness) -> None:
    client, session = await h.session()
    await h.ask(client, session, allow=None)
    with pytest.raises(Conflict, match="already being asked"):
        await h.core.request_channel(ALICE, session, "terminal", 80, 24, "127.0.0.1")


async def test_no_answer_times_out_and_a_late_yes_opens_nothing(tmp_path: Path) -> None:
    h = await make(tmp_path, consent_wait=0.1)
    try:
        client, session = await h.session()
        cid, _ = await h.ask(client, session, allow=None)
        await until(lambda: session.channels[cid].state == "timeout")
        await h.core.client_message(client.agent, m.ChannelDecision(
            channel=cid, allow=True, reason="yes"))
        assert session.channels[cid].state == "timeout"
        assert "recording.started" not in await h.actions(session.id)
        assert not [x for x in client.pending() if isinstance(x, m.ChannelReady)]
    finally:
        await close(h)


async def test_a_yes_at_the_deadline_never_leaves_an_unsealed_recording(tmp_path: Path) -> None:
    """The attack-pass race: a yes sent within ms of the consent deadline used to start
    a recording that was never sealed but was listed in session.ended (so the session's
    bundle never verified). Try the yes at many offsets around the deadline."""
    wait = 0.05
    h = await make(tmp_path, consent_wait=wait)
    try:
        outcomes = set()
        for i in range(24):
            client, session = await h.session()
            cid, _ = await h.ask(client, session, allow=None)
            await asyncio.sleep(wait - 0.006 + i * 0.0005)  # from 6 ms before to 6 ms after
            await h.core.client_message(client.agent, m.ChannelDecision(
                channel=cid, allow=True, reason="yes"))
            outcomes.add(str(session.channels[cid].state))
            await h.core.end_session(ALICE, session, "127.0.0.1")
            events = [e for e in await h.events() if e["session_id"] == session.id]
            started = [e["detail"]["channel"] for e in events
                       if e["action"] == "recording.started"]
            sealed = [e["detail"]["channel"] for e in events
                      if e["action"] == "recording.sealed"]
            ended = [e for e in events if e["action"] == "session.ended"][0]
            assert started == sealed, (i, started, sealed)
            assert ended["detail"]["recordings"] == started
        assert outcomes <= {"pairing", "timeout", "closed"}
    finally:
        await close(h)


# --- the customer's connection -----------------------------------------------------------------


async def test_open_shell_while_the_customer_is_away_is_a_clear_conflict(h: Harness) -> None:
    """The attack-pass race: 'Open shell' during the resume window returned 500 and left
    the channel stuck in 'requested', so every later 'Open shell' was a 409."""
    client, session = await h.session()
    await h.core.client_gone(client.agent, "network drop")
    assert session.live and not session.connected
    with pytest.raises(Conflict, match="connection dropped"):
        await h.core.request_channel(ALICE, session, "terminal", 80, 24, "127.0.0.1")
    assert all(c.state != "requested" for c in session.channels.values())


async def test_open_shell_as_the_connection_closes_closes_the_channel(h: Harness) -> None:
    client, session = await h.session()
    client.closing = True  # the transport is closing; the broker has not noticed yet
    with pytest.raises(Conflict, match="connection dropped"):
        await h.core.request_channel(ALICE, session, "terminal", 80, 24, "127.0.0.1")
    assert [c.state for c in session.channels.values()] == ["closed"]
    client.closing = False
    cid, _ = await h.ask(client, session, allow=None)  # not "already being asked"
    assert session.channels[cid].state == "requested"


async def test_a_drop_closes_channels_and_a_resume_keeps_the_session(h: Harness) -> None:
    client, session = await h.session()
    cid, _, viewer_end = await h.open(client, session)
    await h.core.client_gone(client.agent, "network drop")
    assert session.channels[cid].state == "closed"
    assert session.channels[cid].reason == "the customer's connection dropped"
    assert viewer_end.closed is not None
    back = FakeClient(h.core)
    await h.core.client_hello(back.agent, m.Resume(secret=client.resume_secret,
                                                   version="test", os="Linux"))
    assert (await back.expect(m.Resumed)).session == session.id
    assert session.connected and session.state == "active"
    with pytest.raises(AuthError):  # the token was single use
        await h.core.client_hello(FakeClient(h.core).agent, m.Resume(
            secret=client.resume_secret, version="test", os="Linux"))
    cid2, _ = await h.ask(back, session, allow=None)  # no new session consent needed
    assert session.channels[cid2].state == "requested"


async def test_a_resume_that_drops_while_waiting_its_turn_keeps_the_token(
        tmp_path: Path) -> None:
    """Resumes past the burst wait their turn; a client whose Wi-Fi drops again in that
    wait has not used its token, so its next connection still resumes the session."""
    h = await make(tmp_path, resume_burst=1, resume_every=0.2)
    try:
        client, session = await h.session()
        await h.core.client_gone(client.agent, "network drop")
        first = FakeClient(h.core)
        await h.core.client_hello(first.agent, m.Resume(secret=client.resume_secret,
                                                        version="test", os="Linux"))
        await first.expect(m.Resumed)  # the burst: at once
        first.resume_secret = (await first.expect(m.ResumeToken)).secret
        await h.core.client_gone(first.agent, "network drop")
        unlucky = FakeClient(h.core)
        waiting = asyncio.ensure_future(h.core.client_hello(unlucky.agent, m.Resume(
            secret=first.resume_secret, version="test", os="Linux")))
        await unlucky.expect(m.Notice)  # "Reconnecting too often: … resumes in N s."
        unlucky.closing = True  # dropped while it waits
        with pytest.raises(Gone):
            await waiting
        back = FakeClient(h.core)
        await h.core.client_hello(back.agent, m.Resume(secret=first.resume_secret,
                                                       version="test", os="Linux"))
        assert (await back.expect(m.Resumed)).session == session.id
        assert session.connected and session.state == "active"
    finally:
        await close(h)


async def test_no_resume_within_the_window_ends_the_session(tmp_path: Path) -> None:
    h = await make(tmp_path, resume_window=0.05)
    try:
        client, session = await h.session()
        await h.core.client_gone(client.agent, "network drop")
        await until(lambda: not session.live)
        assert session.end_reason == "the customer's connection was lost"
    finally:
        await close(h)


# --- revocation and failing closed --------------------------------------------------------------


async def test_revocation_ends_the_users_sessions_and_the_channels_they_view(
        h: Harness) -> None:
    client, session = await h.session()
    other_client, other = await h.session(MALLORY)
    cid, _, _ = await h.open(other_client, other, ADMIN)  # an admin on Mallory's session
    ended = await h.core.revoked(ADMIN.id, "the account was disabled")
    assert ended == 0 and other.channels[cid].state == "closed"
    assert "viewer's access ended" in (other.channels[cid].reason or "")
    assert await h.core.revoked(ALICE.id, "the account was disabled") == 1
    assert not session.live and "access ended" in (session.end_reason or "")
    assert other.live


async def test_an_audit_failure_closes_open_channels_and_refuses_new_ones(h: Harness) -> None:
    client, session = await h.session()
    cid, _, viewer_end = await h.open(client, session)
    h.store.broken = True
    with pytest.raises(AuditUnavailable):
        await h.core.request_channel(ALICE, session, "terminal", 80, 24, "127.0.0.1")
    await until(lambda: session.channels[cid].state == "closed")
    assert "audit log unavailable" in (session.channels[cid].reason or "")
    assert viewer_end.closed is not None and viewer_end.closed[0] == 1011


async def test_a_failed_recording_write_closes_the_channel_at_the_last_byte(
        h: Harness) -> None:
    client, session = await h.session()
    cid, agent_end, viewer_end = await h.open(client, session)
    agent_end.incoming.put_nowait(b"before the disk filled\r\n")
    await viewer_end.output(b"before the disk filled")
    sink = session_pump_sink(h, session.channels[cid])
    real = sink._f

    class Full:
        def write(self, data: object) -> int:
            raise OSError(28, "No space left on device")

        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

    sink._f = Full()  # type: ignore[assignment]
    agent_end.incoming.put_nowait(b"never recorded")
    await until(lambda: session.channels[cid].state == "closed")
    async with session.lock:  # the close seals the recording after the state changes
        pass
    assert session.channels[cid].reason == "recording failed: channel closed"
    sealed = [e for e in await h.events() if e["action"] == "recording.sealed"][0]["detail"]
    data = recording(h, session.id, cid).read_bytes()
    assert sealed["bytes"] == len(data) and b"never recorded" not in data
    assert sealed["sha256"] == hashlib.sha256(data).hexdigest()
    assert sealed["incomplete"] == "No space left on device"


def session_pump_sink(h: Harness, channel: object) -> object:
    return h.core._ctx.pumps[channel].recorder.sink  # type: ignore[index]


async def test_a_reload_detaches_and_the_viewer_reattaches_with_a_new_secret(
        h: Harness) -> None:
    client, session = await h.session()
    cid, agent_end, viewer_end = await h.open(client, session)
    with pytest.raises(Conflict):  # no second viewer secret while one is attached
        h.core.viewer_secret(ALICE, session, cid)
    agent_end.incoming.put_nowait(b"scrollback")
    await viewer_end.output(b"scrollback")
    viewer_end.hang_up()
    await until(lambda: session.channels[cid].state == "detached")
    again = FakeEnd()
    secret = h.core.viewer_secret(ALICE, session, cid)
    h.spawn(h.core.serve_viewer_end(secret, again, ALICE, "127.0.0.1"))
    assert await again.output(b"scrollback")  # replayed to the new tab
    await until(lambda: session.channels[cid].state == "open")
    with pytest.raises(AuthError):  # single use
        await h.core.serve_viewer_end(secret, FakeEnd(), ALICE, "127.0.0.1")
