"""Audit and recording fail closed: no record, no channel; the broker stays up.

Failures are real: the data directory (or just recordings/) sits on a tiny
tmpfs that the test fills. Tests run as root (CI does), so chmod would not
stop the broker; a full filesystem does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, make_broker
from tests.e2e.test_support_session import start_shell
from tests.helpers import Customer, Technician

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(path)],
                   check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path) -> Path:
    """Use up every free byte of the filesystem holding ``directory``."""
    target = directory / "filler"
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(100_000):
            try:
                os.write(fd, b"\0" * 4096)
            except OSError:
                break
    finally:
        os.close(fd)
    return target


@contextlib.asynccontextmanager
async def signed_in(broker, tmp_path: Path) -> AsyncIterator[tuple[Technician, Customer]]:
    """A running broker's technician (signed in) and a customer; all stopped after."""
    tech = Technician(broker)
    customer = Customer(broker, tmp=tmp_path)
    try:
        await tech.login("alice", PASSWORD)
        yield tech, customer
    finally:
        customer.close()
        await tech.close()
        broker.stop()


async def test_recording_disk_full_closes_the_channel_with_a_message(tmp_path):
    data = tmp_path / "data"
    broker = make_broker(data, "--pair-timeout", "5", "--min-free-mb", "0")
    with tmpfs(data / "recordings", "256k"):
        broker.start()
        async with signed_in(broker, tmp_path) as (tech, customer):
            sid, cid = await start_shell(tech, customer)
            viewer = await tech.attach(sid, cid)
            await viewer.send("head -c 2000000 /dev/zero | tr '\\0' x; echo\r")
            code, controls = await viewer.closed()
            assert code == 1011
            assert any(c.get("type") == "closed" and "recording failed" in c["reason"]
                       for c in controls)
            s = await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "closed", "x")
            assert "recording failed" in s["channels"][0]["reason"]
            customer.child.expect("Shell closed")
            # with the disk still full, a new channel is refused, not opened unrecorded
            await tech.open_shell(sid)
            customer.accept_shell()
            s = await tech.wait_for(sid, lambda s: s["channels"][1]["state"] == "closed", "y")
            assert "recording unavailable" in s["channels"][1]["reason"]
            assert broker.alive()
            status, _ = await tech.page("/dashboard")
            assert status == 200


async def test_audit_log_full_refuses_new_channels_and_ends_live_ones(tmp_path):
    data = tmp_path / "data"
    with tmpfs(data, "8m"):
        # --min-free-mb 0: the disk guard would refuse before the audit write fails
        broker = make_broker(data, "--pair-timeout", "5", "--min-free-mb", "0").start()
        async with signed_in(broker, tmp_path) as (tech, customer):
            sid, cid = await start_shell(tech, customer)
            viewer = await tech.attach(sid, cid)
            await viewer.send("echo ok\r")
            await viewer.expect("ok\r\n")
            filler = fill(data)
            # the next audited step cannot be committed: it does not happen
            status, body = await tech.api("POST", f"/api/sessions/{sid}/channels",
                                          {"kind": "terminal", "cols": 80, "rows": 24})
            assert status == 503
            assert "audit" in body["error"]
            # and the channel that can no longer be accounted for is closed
            code, controls = await viewer.closed()
            assert code == 1011
            assert broker.alive()
            filler.unlink()
            status, _ = await tech.page("/dashboard")
            assert status == 200
