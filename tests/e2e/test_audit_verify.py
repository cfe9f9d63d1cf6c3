"""A real session's audit trail, checked the way an auditor checks it afterwards.

The broker runs with ``--checkpoint-syslog`` pointed at a UDP socket the test
holds, as a syslog collector on another machine would be.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_support_session import start_shell
from tests.helpers import Broker, Customer, T, Technician, run_cli
from tether.broker.certs import load_audit_key
from tether.protocol.checkpoint import Checkpoint, key_fingerprint


@pytest.fixture
def collector() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    yield sock
    sock.close()


@pytest.fixture
def broker_args(collector: socket.socket) -> list[str]:
    return ["--pair-timeout", "5", "--consent-wait", "8",
            "--checkpoint-syslog", f"127.0.0.1:{collector.getsockname()[1]}"]


def received(sock: socket.socket, until: str, timeout: float = 3 * T) -> list[str]:
    """Syslog messages received until one contains ``until`` (bounded)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            got.append(sock.recv(65536).decode())
        except BlockingIOError:
            if any(until in m for m in got):
                return got
            time.sleep(0.02)
    raise AssertionError(f"no syslog message with {until!r}; got {got}")


def checkpoints_in(messages: list[str]) -> list[str]:
    lines = []
    for m in messages:
        match = re.fullmatch(r"<110>1 \S+ \S+ tether-broker - checkpoint - (\{.*\})", m)
        assert match, m
        lines.append(match.group(1))
    return lines


def verify(*args: str) -> tuple[int, list[str]]:
    result = run_cli("audit", "verify", *args, check=False)
    return result.returncode, result.stdout.splitlines()


async def test_a_finished_session_verifies_exports_and_shows_an_edited_recording(
        tech: Technician, customer: Customer, broker: Broker, collector: socket.socket,
        tmp_path: Path) -> None:
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "open", "open")
    await viewer.send("echo audited-$((6*7))\r")
    await viewer.expect(r"audited-42")
    status, _ = await tech.end(sid)
    assert status == 200
    assert customer.wait_exit() == 0
    assert broker.stop() == 0
    data = broker.data
    fp = key_fingerprint(load_audit_key(data / "certs").public_key())

    # the data directory as the broker left it
    code, out = verify("--data", str(data), "--key-fingerprint", fp)
    assert code == 0, out
    m = re.fullmatch(r"OK: (\d+) events, (\d+) checkpoints, 1 recordings", out[0])
    assert m and int(m[2]) >= 1, out
    assert out[1:] == []  # every event signed, nothing missing
    journal = (data / "audit-checkpoints.jsonl").read_text().splitlines()
    reasons = [Checkpoint.from_json(line).reason for line in journal]
    assert "session end" in reasons
    assert reasons[-1] == "shutdown"
    # the collector received the same lines, including the session's and the shutdown's
    assert checkpoints_in(received(collector, '"reason":"shutdown"')) == journal

    # the session's bundle, checked elsewhere with only the fingerprint
    bundle = tmp_path / "bundle.zip"
    export = run_cli("audit", "export", "--data", str(data), "--session", sid,
                     "--out", str(bundle))
    assert f"--key-fingerprint {fp}" in export.stdout
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    shutil.copy(bundle, auditor / "bundle.zip")
    code, out = verify("--bundle", str(auditor / "bundle.zip"), "--key-fingerprint", fp)
    assert code == 0, out
    assert re.fullmatch(r"OK: \d+ events, \d+ checkpoints, 1 recordings", out[0]), out

    # someone edits the recording on the broker
    cast = data / "recordings" / sid / f"{cid}.cast"
    cast.write_text(cast.read_text().replace("audited-42", "audited-43"))
    code, out = verify("--data", str(data))
    assert code == 1
    assert out == [f"FAILED: event {_sealed_seq(data, sid)}: recording recordings/{sid}/{cid}.cast"
                   " was altered (its sha256 differs from the sealed one)"]
    again = tmp_path / "again.zip"
    run_cli("audit", "export", "--data", str(data), "--session", sid, "--out", str(again))
    code, out_bundle = verify("--bundle", str(again), "--key-fingerprint", fp)
    assert (code, out_bundle) == (1, out)
    # what was exported before the edit still proves the original
    code, out = verify("--bundle", str(auditor / "bundle.zip"), "--key-fingerprint", fp)
    assert code == 0, out


def _sealed_seq(data: Path, sid: str) -> int:
    con = sqlite3.connect(data / "tether.db")
    try:
        ((seq,),) = con.execute("SELECT seq FROM audit_events WHERE session_id = ?"
                                " AND action = 'recording.sealed'", (sid,)).fetchall()
    finally:
        con.close()
    return int(seq)


async def test_the_shutdown_checkpoint_reaches_the_syslog_collector(
        tech: Technician, broker: Broker, collector: socket.socket) -> None:
    """No session at all: stopping the broker still signs its log and sends the
    checkpoint off the machine before it exits."""
    assert broker.stop() == 0
    journal = (broker.data / "audit-checkpoints.jsonl").read_text().splitlines()
    assert [Checkpoint.from_json(line).reason for line in journal] == ["shutdown"]
    (line,) = checkpoints_in(received(collector, '"reason":"shutdown"'))
    assert line == journal[0]
    con = sqlite3.connect(broker.data / "tether.db")
    try:
        ((last, action),) = con.execute("SELECT seq, action FROM audit_events"
                                        " ORDER BY seq DESC LIMIT 1").fetchall()
    finally:
        con.close()
    assert action == "broker.stopped"
    assert json.loads(line)["seq"] == last
