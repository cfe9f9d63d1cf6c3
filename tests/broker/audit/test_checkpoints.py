"""Signed checkpoints made by the audit log, and their delivery off the machine.

A real SQLite store in a temp directory; a real Ed25519 key; a real UDP
syslog collector and a real HTTPS collector (aiohttp with a self-signed
certificate) on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import logging
import re
import socket
import sqlite3
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.helpers import T
from tether.broker.audit.checkpoints import CHECKPOINT_FILE, Forwarder
from tether.broker.audit.log import AuditLog
from tether.broker.audit.verify import verify_data
from tether.broker.store.sqlite import Store
from tether.protocol.checkpoint import Checkpoint, key_fingerprint

#: the longest any single wait in these tests may take
WAIT = max(2.0, T / 2)


@pytest.fixture
def key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "tether.db")
    yield s
    await s.close()


def db_lines(data: Path) -> list[tuple[int, str]]:
    con = sqlite3.connect(data / "tether.db")
    try:
        return list(con.execute("SELECT seq, line FROM audit_checkpoints ORDER BY seq"))
    finally:
        con.close()


def heads(data: Path) -> dict[int, bytes]:
    con = sqlite3.connect(data / "tether.db")
    try:
        return {seq: bytes(h) for seq, h in con.execute("SELECT seq, hash FROM audit_events")}
    finally:
        con.close()


def journal(data: Path) -> list[str]:
    path = data / CHECKPOINT_FILE
    return path.read_text().splitlines() if path.exists() else []


async def fill(audit: AuditLog, n: int) -> None:
    for i in range(n):
        await audit.append("test.event", actor="tester", session_id="s_1", n=i)


async def eventually(pred: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def check_signed(data: Path, key: ed25519.Ed25519PrivateKey,
                 expected: list[tuple[int, str]]) -> list[Checkpoint]:
    """The database and the journal hold the same lines: checkpoints at the expected
    (seq, reason), each a valid signature over the chain head at its seq."""
    in_db = db_lines(data)
    assert [line for _, line in in_db] == journal(data)
    cps = [Checkpoint.from_json(line) for _, line in in_db]
    assert [(cp.seq, cp.reason) for cp in cps] == expected
    chain = heads(data)
    for (seq, _), cp in zip(in_db, cps, strict=True):
        assert cp.seq == seq
        assert cp.problem(key.public_key()) is None
        assert cp.key == key_fingerprint(key.public_key())
        assert cp.head == chain[seq].hex()
    return cps


# --- when checkpoints are made -----------------------------------------------------------


async def test_a_checkpoint_every_n_events_in_the_database_and_the_journal(
        store: Store, tmp_path: Path, key: ed25519.Ed25519PrivateKey) -> None:
    audit = AuditLog(store, key, data=tmp_path, every=3, interval=3600)
    await audit.start()
    await fill(audit, 2)
    assert db_lines(tmp_path) == []
    await fill(audit, 1)
    # committed in the same transaction as the event that made it due
    assert [seq for seq, _ in db_lines(tmp_path)] == [3]
    await fill(audit, 4)
    await audit.close()
    check_signed(tmp_path, key, [(3, "events"), (6, "events"), (7, "shutdown")])


async def test_on_the_interval_only_when_events_were_added(
        store: Store, tmp_path: Path, key: ed25519.Ed25519PrivateKey) -> None:
    audit = AuditLog(store, key, data=tmp_path, every=1000, interval=0.2)
    await audit.start()
    try:
        await asyncio.sleep(0.5)
        assert db_lines(tmp_path) == []  # nothing to sign yet
        # one batch: a tick sees both events or neither
        await asyncio.gather(*(audit.append("test.event", actor="tester", n=i)
                               for i in range(2)))
        await eventually(lambda: len(journal(tmp_path)) == 1, "an interval checkpoint")
        await asyncio.sleep(0.5)  # two more ticks, nothing new
        assert len(db_lines(tmp_path)) == 1
        await fill(audit, 1)
        await eventually(lambda: len(journal(tmp_path)) == 2, "a second interval checkpoint")
    finally:
        await audit.close()
    check_signed(tmp_path, key, [(2, "interval"), (3, "interval")])


async def test_on_request_and_never_twice_for_the_same_head(
        store: Store, tmp_path: Path, key: ed25519.Ed25519PrivateKey) -> None:
    audit = AuditLog(store, key, data=tmp_path, every=1000, interval=3600)
    await audit.start()
    assert await audit.checkpoint("session end") is None  # an empty log
    await fill(audit, 4)
    cp = await audit.checkpoint("session end")
    assert cp is not None and (cp.seq, cp.reason) == (4, "session end")
    assert await audit.checkpoint("export") is None  # already signed
    await audit.close()  # nothing new: no "shutdown" checkpoint
    check_signed(tmp_path, key, [(4, "session end")])
    assert journal(tmp_path) == [cp.to_json()]


async def test_at_shutdown(store: Store, tmp_path: Path,
                           key: ed25519.Ed25519PrivateKey) -> None:
    audit = AuditLog(store, key, data=tmp_path, every=1000, interval=3600)
    await audit.start()
    await fill(audit, 3)
    assert db_lines(tmp_path) == []
    await audit.close()
    check_signed(tmp_path, key, [(3, "shutdown")])


async def test_no_key_no_checkpoints(store: Store, tmp_path: Path) -> None:
    audit = AuditLog(store, None, data=tmp_path, every=1, interval=0.05)
    await audit.start()
    await fill(audit, 3)
    assert await audit.checkpoint("x") is None
    await asyncio.sleep(0.2)
    await audit.close()
    assert db_lines(tmp_path) == [] and journal(tmp_path) == []


async def test_checkpoints_survive_a_restart_and_the_count_continues(
        tmp_path: Path, key: ed25519.Ed25519PrivateKey) -> None:
    for _ in range(2):  # the broker runs twice on the same data directory
        store = await Store.open(tmp_path / "tether.db")
        audit = AuditLog(store, key, data=tmp_path, every=3, interval=3600)
        await audit.start()
        await fill(audit, 4)
        await audit.close()
        await store.close()
    # 3 (events), 4 (shutdown); then 4 more: due at 7 = 4 + 3, shutdown at 8
    check_signed(tmp_path, key, [(3, "events"), (4, "shutdown"), (7, "events"),
                                 (8, "shutdown")])
    report = verify_data(tmp_path, key.public_key())
    assert (report.events, report.checkpoints, report.unsigned) == (8, 4, 0)


# --- off the machine ---------------------------------------------------------------------


class Datagrams(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append(data)


@pytest.fixture
async def syslog_collector() -> AsyncIterator[tuple[int, Datagrams]]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        Datagrams, local_addr=("127.0.0.1", 0), family=socket.AF_INET)
    port = transport.get_extra_info("sockname")[1]
    yield port, proto
    transport.close()


SYSLOG = re.compile(
    r"<110>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (?P<host>\S+) tether-broker - checkpoint"
    r" - (?P<msg>\{.*\})")


async def test_checkpoints_go_to_a_syslog_collector(
        store: Store, tmp_path: Path, key: ed25519.Ed25519PrivateKey,
        syslog_collector: tuple[int, Datagrams]) -> None:
    port, collector = syslog_collector
    forwarder = Forwarder(syslog=("127.0.0.1", port))
    assert forwarder.enabled
    await forwarder.start()
    audit = AuditLog(store, key, data=tmp_path, every=2, interval=3600, forward=forwarder)
    await audit.start()
    try:
        await fill(audit, 2)
        await eventually(lambda: len(collector.received) == 1, "a syslog datagram")
        await fill(audit, 1)
    finally:
        await audit.close()
        await forwarder.close(grace=WAIT)
    await eventually(lambda: len(collector.received) == 2, "the shutdown checkpoint")
    lines = journal(tmp_path)
    for datagram, line in zip(collector.received, lines, strict=True):
        m = SYSLOG.fullmatch(datagram.decode())
        assert m, datagram
        assert m["msg"] == line  # the very line in the database and the journal
        cp = Checkpoint.from_json(m["msg"])
        assert m["ts"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cp.ts_us / 1e6))
        assert m["host"] == (socket.gethostname()[:64] or "-")
    check_signed(tmp_path, key, [(2, "events"), (3, "shutdown")])


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that is its own issuer: (cert.pem, key.pem)."""
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "collector")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                       critical=False)
        .sign(private, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "collector.pem", tmp_path / "collector-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return cert_file, key_file


class Collector:
    """An HTTPS endpoint taking checkpoints; answers ``statuses`` in turn, then 204."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[str, str, bytes]] = []  # (path, content type, body)

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, request.content_type, await request.read()))
        return web.Response(status=self.statuses.pop(0) if self.statuses else 204)


@pytest.fixture
async def https_collector(tmp_path: Path) -> AsyncIterator[tuple[str, Path, Collector]]:
    cert_file, key_file = self_signed(tmp_path)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_file, key_file)
    collector = Collector([500])
    app = web.Application()
    app.router.add_post("/checkpoints", collector.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, ssl_context=ctx)
    await site.start()
    url = f"https://127.0.0.1:{sock.getsockname()[1]}/checkpoints"
    yield url, cert_file, collector
    await runner.cleanup()


async def test_checkpoints_are_posted_to_an_https_collector_and_retried(
        store: Store, tmp_path: Path, key: ed25519.Ed25519PrivateKey,
        https_collector: tuple[str, Path, Collector], caplog: pytest.LogCaptureFixture) -> None:
    """The collector first answers 500: the same checkpoint is sent again, and the audit
    log did not wait for it."""
    url, ca, collector = https_collector
    forwarder = Forwarder(url, ca)
    await forwarder.start()
    audit = AuditLog(store, key, data=tmp_path, every=2, interval=3600, forward=forwarder)
    await audit.start()
    try:
        with caplog.at_level(logging.WARNING, "tether.audit"):
            started = time.monotonic()
            await fill(audit, 3)  # a checkpoint at 2, then one more event
            assert time.monotonic() - started < 0.5
            await eventually(lambda: len(collector.requests) == 2, "the retry")
    finally:
        await audit.close()
        await forwarder.close(grace=WAIT)
    line = journal(tmp_path)[0]
    assert collector.requests[:2] == [("/checkpoints", "application/json", line.encode())] * 2
    assert "checkpoint 2 refused by the collector (HTTP 500)" in caplog.text
    # the shutdown checkpoint was delivered before the forwarder stopped
    assert [body for *_, body in collector.requests[2:]] == [journal(tmp_path)[1].encode()]
    check_signed(tmp_path, key, [(2, "events"), (3, "shutdown")])


async def test_a_collector_with_an_untrusted_certificate_gets_nothing(
        store: Store, tmp_path: Path, key: ed25519.Ed25519PrivateKey,
        https_collector: tuple[str, Path, Collector], caplog: pytest.LogCaptureFixture) -> None:
    url, _, collector = https_collector
    forwarder = Forwarder(url)  # the system's CAs: the self-signed certificate is not trusted
    await forwarder.start()
    audit = AuditLog(store, key, data=tmp_path, every=1000, interval=3600, forward=forwarder)
    await audit.start()
    with caplog.at_level(logging.WARNING, "tether.audit"):
        await fill(audit, 1)
        await audit.close()
        await forwarder.close(grace=0.3)
    assert collector.requests == []
    assert "checkpoint 1 not delivered" in caplog.text
    # the checkpoint itself is kept locally all the same
    check_signed(tmp_path, key, [(1, "shutdown")])
    # and the server log says how many did not leave the machine: this one, being retried
    assert "1 checkpoints were not forwarded before shutdown" in caplog.text


async def test_a_checkpoint_due_on_the_last_event_before_close_is_journaled_and_forwarded(
        store: Store, tmp_path: Path, key: ed25519.Ed25519PrivateKey) -> None:
    """As at broker shutdown: the last event (``broker.stopped``) makes a checkpoint due,
    then the log is closed at once. That checkpoint is in the database; it must also
    reach the journal and the collector (close() makes no "shutdown" one: the head is
    already signed)."""
    forwarded: list[Checkpoint] = []
    audit = AuditLog(store, key, data=tmp_path, every=2, interval=3600,
                     forward=forwarded.append)
    await audit.start()
    await fill(audit, 2)
    await audit.close()
    assert [seq for seq, _ in db_lines(tmp_path)] == [2]
    assert [cp.seq for cp in forwarded] == [2]
    check_signed(tmp_path, key, [(2, "events")])


async def test_the_forwarder_sends_exactly_the_checkpoint_json(
        https_collector: tuple[str, Path, Collector], key: ed25519.Ed25519PrivateKey) -> None:
    url, ca, collector = https_collector
    collector.statuses.clear()
    forwarder = Forwarder(url, ca)
    await forwarder.start()
    cp = Checkpoint.make(key, 9, bytes(range(32)), 1_700_000_000_000_000, "export")
    forwarder(cp)
    await forwarder.close(grace=WAIT)
    ((_, _, body),) = collector.requests
    assert Checkpoint.from_json(body) == cp
    assert json.loads(body) == json.loads(cp.to_json())
