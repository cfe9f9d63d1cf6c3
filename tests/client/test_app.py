"""The client's control loop (client/app.py): broker messages by table, consent enforced.

A Client is built with its terminal on a pipe and a fake control connection;
no broker, no network. ``reaper.kill_all`` is stubbed: it would kill every
descendant of the test runner.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import T
from tether.client import app
from tether.client.channels.watch import Terminal
from tether.client.consent import Answer
from tether.client.tasks import TaskOwner
from tether.protocol import messages as m


class Control:
    """The control connection, as far as handlers see it."""

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send(self, text: str) -> None:
        self.sent.append(json.loads(text))


class Screen:
    def __init__(self) -> None:
        self.read_fd, write_fd = os.pipe()
        os.set_blocking(self.read_fd, False)
        self.term = Terminal(write_fd)
        self.seen = b""

    @property
    def text(self) -> str:
        try:
            while chunk := os.read(self.read_fd, 65536):
                self.seen += chunk
        except BlockingIOError:
            pass
        return self.seen.decode(errors="replace")


@pytest.fixture
async def client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[app.Client]:
    monkeypatch.setattr(app.tunnel, "ssl_context", lambda ca: ssl.create_default_context())
    monkeypatch.setattr(app.reaper, "kill_all", lambda **kw: app.reaper.Stopped())
    args = argparse.Namespace(broker="https://127.0.0.1:9", ca="ca.pem", allow_root=True,
                              consent_timeout=T, no_watch=True, shell=None,
                              log=str(tmp_path / "c.log"))
    screen = Screen()
    c = app.Client(args, term=screen.term)
    c.screen = screen  # type: ignore[attr-defined]
    c.control = Control()  # type: ignore[assignment]
    async with TaskOwner() as tasks:
        c.tasks = tasks
        yield c
    c.journal.close()
    c.term.close()
    os.close(screen.read_fd)
    os.close(c.term.fd)


def journal(c: app.Client) -> list[dict]:
    return [json.loads(line) for line in Path(c.args.log).read_text().splitlines()]


def said(c: app.Client) -> str:
    return c.screen.text  # type: ignore[attr-defined]


def sent(c: app.Client) -> list[dict]:
    return c.control.sent  # type: ignore[union-attr]


# --- the table ----------------------------------------------------------------------


def test_every_broker_message_has_a_handler() -> None:
    assert set(app.HANDLERS) == set(m.BROKER_MESSAGES)


def test_no_handler_for_what_only_the_client_sends() -> None:
    assert not set(app.HANDLERS) & (m.CLIENT_MESSAGES - m.BROKER_MESSAGES)


async def test_a_message_goes_to_its_handler(client: app.Client) -> None:
    await client.handle(m.Notice(text="maintenance at 5\x1b[2J"))
    assert "Broker: maintenance at 5" in said(client) and "\x1b[2J" not in said(client)
    assert journal(client)[-1]["event"] == "notice"
    await client.handle(m.Heartbeat())  # nothing to say


async def test_ended_and_refused_finish_the_run(client: app.Client) -> None:
    with pytest.raises(app.Finished) as ended:
        await client.handle(m.Ended(reason="by the technician"))
    assert ended.value.outcome is app.Outcome.ENDED
    with pytest.raises(app.Finished) as refused:
        await client.handle(m.Refused(reason="too many codes"))
    assert refused.value.outcome is app.Outcome.REFUSED


# --- consent is enforced here -----------------------------------------------------------


async def test_a_channel_request_before_the_session_yes_is_refused_unasked(
        client: app.Client) -> None:
    await client.handle(m.ChannelRequest(channel="c1", kind="terminal", technician="M", org=""))
    assert sent(client) == [{"type": "channel_decision", "channel": "c1", "allow": False,
                             "reason": "no session"}]
    assert journal(client)[-1]["event"] == "refused_unasked"


async def test_channel_ready_for_a_channel_not_allowed_in_the_ledger_is_refused(
        client: app.Client) -> None:
    client.decisions.session_allowed = True
    client.decisions.ledger.decide("shell", "c_other", True)
    client.decisions.ledger.decide("shell", "c_no", False)
    for channel in ("c_evil", "c_no"):
        await client.handle(m.ChannelReady(channel=channel, secret="s"))
    assert not client.channels
    assert said(client).count("did not allow; refused") == 2
    assert [e["event"] for e in journal(client)] == ["refused_unrequested"] * 2


async def test_an_allowed_channel_opens_once(client: app.Client,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    relays: list[str] = []
    hold = asyncio.Event()

    async def open_relay(base: str, ctx: ssl.SSLContext, secret: str) -> None:
        relays.append(secret)
        await hold.wait()  # the relay never answers: the channel stays "opening"
        raise OSError("unreachable")

    monkeypatch.setattr(app.tunnel, "open_relay", open_relay)
    monkeypatch.setattr("tether.client.channels.tunnel.open_relay", open_relay)
    client.decisions.session_allowed = True
    client.decisions.ledger.decide("shell", "c1", True)
    await client.handle(m.ChannelReady(channel="c1", secret="first"))
    await asyncio.sleep(0)
    assert "c1" in client.channels and relays == ["first"]
    await client.handle(m.ChannelReady(channel="c1", secret="again"))  # while it runs
    assert relays == ["first"] and "did not allow; refused" in said(client)
    hold.set()
    for _ in range(int(100 * T)):
        if not client.channels:
            break
        await asyncio.sleep(0.01)
    assert not client.channels
    assert sent(client)[-1] == {"type": "channel_closed", "channel": "c1",
                                "reason": "could not open the channel: OSError"}
    assert client.decisions.allowed_kind("c1") is None  # its yes ended with it
    await client.handle(m.ChannelReady(channel="c1", secret="later"))
    assert relays == ["first"]


async def test_the_customers_end_stops_channels_and_forgets_every_yes(
        client: app.Client, monkeypatch: pytest.MonkeyPatch) -> None:
    async def open_relay(base: str, ctx: ssl.SSLContext, secret: str) -> None:
        await asyncio.sleep(1000)

    monkeypatch.setattr("tether.client.channels.tunnel.open_relay", open_relay)
    client.decisions.session_allowed = True
    client.decisions.ledger.decide("shell", "c1", True)
    client.decisions.ledger.decide("shell", "c2", True)
    await client.handle(m.ChannelReady(channel="c1", secret="s"))
    await asyncio.sleep(0)
    task = client.channels.tasks["c1"]
    client.end_local("you ended the session")
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and not client.channels
    assert not client.decisions.session_allowed
    assert client.decisions.allowed_kind("c2") is None


async def test_a_claim_starts_a_new_ledger_and_asks_in_an_owned_task(
        client: app.Client) -> None:
    client.decisions.ledger.decide("shell", "old", False)

    class Yes:
        async def ask(self, question: str) -> Answer:
            return Answer(True, "yes")

    client.decisions.asker = Yes()
    await client.handle(m.Claimed(session="s1", technician="Alice", org="Acme"))
    assert client.decisions.ledger.refusals == {}
    assert len(client.tasks) == 1  # type: ignore[arg-type]
    for _ in range(int(100 * T)):
        if sent(client):
            break
        await asyncio.sleep(0.01)
    assert sent(client)[0]["type"] == "session_decision" and sent(client)[0]["allow"] is True
    assert client.decisions.session_allowed
