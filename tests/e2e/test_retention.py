"""Retention of recordings, and the disk guard that refuses channels it could not record."""

from __future__ import annotations

import asyncio
import json
import time

from tests.conftest import PASSWORD, make_broker
from tests.e2e.test_audit_console import auditor, events, recorded_session
from tests.helpers import Broker, Customer, T, Technician, run_cli


async def test_old_recordings_are_purged_audited_and_still_verify(data, tmp_path):
    """A restart with a retention of ~0 deletes the file, logs `recording.purged` with the
    sealed sha256, and `audit verify` still says OK (and that one was removed)."""
    broker = make_broker(data).start()
    tech = Technician(broker)
    customer = Customer(broker, tmp=tmp_path)
    try:
        await tech.login("alice", PASSWORD)
        sid, cid = await recorded_session(tech, customer, "keep-me")
    finally:
        customer.close()
        await tech.close()
        broker.stop()
    cast = data / "recordings" / sid / f"{cid}.cast"
    assert cast.is_file()
    sealed = [e for e in events(broker, "recording.sealed") if e["channel"] == cid]

    broker = Broker(data, "--retain-recordings-days", "0.000001").start()
    try:
        deadline = time.monotonic() + 3 * T
        while cast.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert not cast.exists()
        purged = events(broker, "recording.purged")
        assert [(p["channel"], p["sha256"], p["actor"]) for p in purged] == [
            (cid, sealed[0]["sha256"], "broker")]
        a = await auditor(broker)
        try:
            status, page = await a.page(f"/audit/sessions/{sid}")
            assert status == 200 and "removed by retention" in page
            async with a.http.get(f"{a.url}/api/audit/sessions/{sid}/recordings/{cid}") as r:
                assert r.status == 404
        finally:
            await a.close()
    finally:
        broker.stop()
    out = run_cli("audit", "verify", "--data", str(data), check=False)
    assert out.returncode == 0, out.stdout
    assert out.stdout.startswith("OK: ") and " 0 recordings" in out.stdout.splitlines()[0]
    assert "1 recordings were removed by retention" in out.stdout
    # the events themselves are never deleted
    assert any(e["session_id"] == sid for e in events(broker, "session.ended"))


async def test_low_disk_refuses_channels_says_why_and_keeps_the_console(data, tmp_path):
    """Below --min-free-mb no channel opens (nothing could be recorded): the technician
    sees why, the customer is told without being asked, auditors still work."""
    broker = make_broker(data, "--min-free-mb", str(10**12)).start()
    tech = Technician(broker)
    customer = Customer(broker, tmp=tmp_path)
    try:
        await tech.login("alice", PASSWORD)
        sid = await tech.session_id(customer.code())
        customer.accept_session()
        await tech.wait_for(sid, lambda s: s["state"] == "active", "session consent")
        status, body = await tech.api("POST", f"/api/sessions/{sid}/channels",
                                      {"kind": "terminal", "cols": 80, "rows": 24})
        assert status == 202
        channel = body["channel"]
        assert channel["state"] == "refused" and "disk is nearly full" in channel["reason"]
        customer.child.expect("cannot\\s+record it")
        assert not (data / "recordings" / sid).exists()
        refused = [e for e in events(broker, "channel.refused") if e["session_id"] == sid]
        assert [e["reason"] for e in refused] == ["disk nearly full"]
        # the session itself goes on, and the audit console still serves
        assert (await tech.state(sid))["state"] == "active"
        a = await auditor(broker)
        try:
            status, page = await a.page(f"/audit/sessions/{sid}")
            assert status == 200 and "disk nearly full" in page
        finally:
            await a.close()
        journal = [json.loads(x) for x in customer.journal.read_text().splitlines()]
        assert any(j.get("event") == "notice" for j in journal)
    finally:
        customer.close()
        await tech.close()
        broker.stop()
