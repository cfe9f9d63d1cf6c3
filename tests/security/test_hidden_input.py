"""A command typed while the customer's terminal hides it must not vanish from the record.

The attack: in the customer's real shell the technician runs ``read -s X; eval "$X"``
and types a command while echo is off. Input is kept out of recordings while echo is
off (passwords), so the command ran with no trace in the recording and none in the
customer's view. Now:

* with ``serve --reveal-key`` (the public half of ``audit keygen``) the hidden input
  is sealed to the auditor's key beside the recording, sealed into the log, carried
  by the bundle, checked by ``audit verify`` and read offline by ``audit reveal``,
  while no file on the broker holds it readable;
* without it, the input is dropped as before but its length and time are recorded;
* either way the recording (so the player) and the customer's view say
  "hidden input (N bytes)".

Real broker, real client in a real PTY, real shell.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import browser_page, chromium, sign_in  # noqa: F401 - fixtures
from tests.e2e.test_support_session import start_shell
from tests.helpers import Broker, Customer, T, Technician, Viewer, run_cli
from tether.broker.certs import load_audit_key
from tether.protocol.checkpoint import key_fingerprint

SECRET = "echo PWNED-marker"  # typed with echo off; its output is "PWNED-marker"
TYPED = len(SECRET) + 1  # and the Enter
LABEL = f"hidden input ({TYPED} bytes)"


@pytest.fixture
def auditor(tmp_path: Path) -> Path:
    """Where the auditor's key pair is, made on 'their machine' (never the broker's)."""
    return tmp_path / "auditor-keys"


@pytest.fixture
def broker_args(request: pytest.FixtureRequest, auditor: Path) -> list[str]:
    flags = ["--pair-timeout", "5", "--consent-wait", "8"]
    if request.param == "sealed":
        result = run_cli("audit", "keygen", "--out", str(auditor))
        assert "reveal-key.pub.pem" in result.stdout
        assert (auditor / "reveal-key.pem").stat().st_mode & 0o777 == 0o600
        flags += ["--reveal-key", str(auditor / "reveal-key.pub.pem")]
    return flags


async def echo_is(viewer: Viewer, on: bool) -> None:
    """Wait (bounded) until the client has told the broker its PTY's echo flag."""
    deadline = time.monotonic() + 3 * T
    want = {"type": "echo", "on": on}
    while want not in viewer.controls[-1:]:
        left = deadline - time.monotonic()
        assert left > 0, f"echo never turned {'on' if on else 'off'}: {viewer.controls}"
        try:
            await viewer.expect(r"\A(?!)", timeout=min(left, 0.2))  # read frames a while
        except AssertionError:
            pass


async def hidden_command(tech: Technician, customer: Customer) -> tuple[str, str]:
    """The attack, then the end of the session; (session, channel)."""
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send('read -s X; eval "$X"\r')
    await echo_is(viewer, False)
    await viewer.send(SECRET[:10])  # two frames, one run: one line typed
    await viewer.send(SECRET[10:] + "\r")
    await viewer.expect(r"\rPWNED-marker\r\n")  # it ran
    await echo_is(viewer, True)
    # the customer's own view says something was typed that their terminal did not show
    await asyncio.to_thread(customer.child.expect_exact, f"[{LABEL}]")
    status, _ = await tech.end(sid)
    assert status == 200
    assert await asyncio.to_thread(customer.wait_exit) == 0
    journal = [json.loads(x) for x in customer.journal.read_text().splitlines()]
    assert {"event": "hidden_input", "channel": cid, "bytes": TYPED} in [
        {k: v for k, v in e.items() if k != "ts"} for e in journal]
    return sid, cid


def cast_events(broker: Broker, sid: str, cid: str) -> list[list[Any]]:
    cast = broker.data / "recordings" / sid / f"{cid}.cast"
    return [json.loads(x) for x in cast.read_text().splitlines()[1:]]


def verify(*args: str) -> tuple[int, str]:
    result = run_cli("audit", "verify", *args, check=False)
    return result.returncode, result.stdout


@pytest.mark.parametrize("broker_args", ["sealed"], indirect=True)
async def test_hidden_command_is_sealed_verified_and_revealed_offline(
        tech: Technician, customer: Customer, broker: Broker, auditor: Path,
        tmp_path: Path) -> None:
    sid, cid = await hidden_command(tech, customer)
    assert broker.stop() == 0
    data = broker.data
    fp = key_fingerprint(load_audit_key(data / "certs").public_key())

    # nothing on the broker holds the command readable; the recording says it was typed
    recordings = data / "recordings" / sid
    for f in recordings.iterdir():
        assert SECRET.encode() not in f.read_bytes(), f
    events = cast_events(broker, sid, cid)
    typed = "".join(e[2] for e in events if e[1] == "i")
    assert "read -s X" in typed and "PWNED" not in typed  # only its output is in "o"
    assert [e[2] for e in events if e[1] == "m" and e[2].startswith("hidden")] == [LABEL]
    hidden = recordings / f"{cid}.hidden.jsonl"
    assert b"PWNED" not in hidden.read_bytes()

    # the log seals it; the data directory and a bundle verify
    code, out = verify("--data", str(data), "--key-fingerprint", fp)
    assert code == 0 and "1 recordings, 1 sealed hidden-input files" in out, out
    bundle = tmp_path / "bundle.zip"
    run_cli("audit", "export", "--data", str(data), "--session", sid, "--out", str(bundle))
    with zipfile.ZipFile(bundle) as zf:
        assert f"recordings/{sid}/{cid}.hidden.jsonl" in zf.namelist()
    code, out = verify("--bundle", str(bundle), "--key-fingerprint", fp)
    assert code == 0 and "1 recordings, 1 sealed hidden-input files" in out, out

    # the auditor reads it offline, with its time, from the bundle alone
    result = run_cli("audit", "reveal", "--bundle", str(bundle), "--key",
                     str(auditor / "reveal-key.pem"), "--key-fingerprint", fp)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    assert lines[0].endswith(f"session {sid} channel {cid}: {SECRET}\\r"), lines
    assert " UTC (+" in lines[0]

    # another key opens nothing
    other = tmp_path / "other-keys"
    run_cli("audit", "keygen", "--out", str(other))
    result = run_cli("audit", "reveal", "--bundle", str(bundle), "--key",
                     str(other / "reveal-key.pem"), check=False)
    assert result.returncode == 1 and "not to the key you gave" in result.stdout
    assert "PWNED" not in result.stdout

    # a changed byte in the sealed file fails verify, on the broker and in a bundle
    raw = hidden.read_bytes()
    at = raw.index(b'"box":"') + 20
    hidden.write_bytes(raw[:at] + (b"A" if raw[at:at + 1] != b"A" else b"B") + raw[at + 1:])
    code, out = verify("--data", str(data))
    assert code == 1 and f"recording recordings/{sid}/{cid}.hidden.jsonl was altered" in out
    tampered = tmp_path / "tampered.zip"
    run_cli("audit", "export", "--data", str(data), "--session", sid, "--out", str(tampered))
    code, out = verify("--bundle", str(tampered), "--key-fingerprint", fp)
    assert code == 1 and f"recordings/{sid}/{cid}.hidden.jsonl was altered" in out, out


@pytest.mark.parametrize("broker_args", ["dropped"], indirect=True)
async def test_without_a_reveal_key_the_length_and_time_are_recorded(
        tech: Technician, customer: Customer, broker: Broker) -> None:
    sid, cid = await hidden_command(tech, customer)
    assert broker.stop() == 0
    recordings = broker.data / "recordings" / sid
    assert sorted(p.name for p in recordings.iterdir()) == [f"{cid}.cast"]
    assert SECRET.encode() not in (recordings / f"{cid}.cast").read_bytes()
    events = cast_events(broker, sid, cid)
    typed = "".join(e[2] for e in events if e[1] == "i")
    assert "read -s X" in typed and "PWNED" not in typed
    marks = [e for e in events if e[1] == "m" and e[2].startswith("hidden")]
    assert [e[2] for e in marks] == [LABEL]
    off = next(e[0] for e in events if e[1] == "m" and e[2].startswith("echo off"))
    on = next(e[0] for e in events if e[1] == "m" and e[2] == "echo on" and e[0] >= off)
    assert off <= marks[0][0] <= on  # when it was typed
    code, out = verify("--data", str(broker.data))
    assert code == 0 and "sealed hidden-input" not in out, out


@pytest.mark.browser
@pytest.mark.parametrize("broker_args", ["dropped"], indirect=True)
async def test_the_player_shows_the_hidden_input_marker(
        tech: Technician, customer: Customer, broker: Broker,
        browser_page: Any) -> None:  # noqa: F811 - the fixture imported above
    """An auditor replaying the shell in headless Chromium sees where input was hidden."""
    expect = pytest.importorskip("playwright.async_api").expect
    sid, cid = await hidden_command(tech, customer)
    await asyncio.to_thread(broker.add_user, "carol", PASSWORD, "auditor", "Carol Audit")
    page, problems = browser_page
    await sign_in(page, broker, "carol", PASSWORD)
    await page.goto(f"{broker.url}/audit/sessions/{sid}")
    await page.get_by_role("button", name=f"Play recording {cid}").click()
    marker = page.get_by_role("button", name=re.compile(
        rf"^Jump to [\d:.]+ {re.escape(LABEL)}$"))
    await expect(marker).to_be_visible(timeout=3 * T * 1000)
    await problems.check(page)
