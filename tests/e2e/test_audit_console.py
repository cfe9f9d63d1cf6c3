"""The auditor's side of the console, against a real broker with a real session."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import zipfile
from typing import Any

from tests.conftest import PASSWORD
from tests.e2e.test_support_session import start_shell
from tests.helpers import Broker, Customer, Technician, run_cli


async def recorded_session(tech: Technician, customer: Customer, marker: str) -> tuple[str, str]:
    """A session in which the technician ran `echo <marker>`, ended by the technician."""
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send(f"echo {marker}-$((6*7))\r")
    await viewer.expect(f"{marker}-42")
    status, _ = await tech.end(sid)
    assert status == 200
    assert customer.wait_exit() == 0
    return sid, cid


async def auditor(broker: Broker, name: str = "carol") -> Technician:
    broker.add_user(name, PASSWORD, role="auditor", display="Carol Audit", org="Acme Audit")
    a = Technician(broker)
    status, _ = await a.login(name, PASSWORD)
    assert status == 200
    return a


def events(broker: Broker, action: str) -> list[dict[str, Any]]:
    con = sqlite3.connect(broker.data / "tether.db")
    try:
        rows = con.execute("SELECT actor, session_id, detail FROM audit_events WHERE action = ?"
                           " ORDER BY seq", (action,)).fetchall()
    finally:
        con.close()
    return [{"actor": a, "session_id": s, **json.loads(d)} for a, s, d in rows]


async def get(client: Technician, path: str) -> tuple[int, bytes, Any]:
    async with client.http.get(client.url + path, allow_redirects=False) as r:
        return r.status, await r.read(), r.headers


async def test_auditor_finds_replays_and_exports_a_session(tech, customer, broker):
    sid, cid = await recorded_session(tech, customer, "audit-me")
    a = await auditor(broker)
    try:
        # an auditor lands in the Audit section, and the session is listed there
        status, page = await a.page("/")
        assert status == 200 and "Audit" in page and sid in page
        assert 'name="code"' not in page  # no "Connect" form for an auditor
        status, page = await a.page("/audit?technician=alice&outcome=completed")
        assert sid in page
        status, page = await a.page("/audit?technician=nobody-like-this")
        assert sid not in page and "No sessions match" in page

        # the timeline has who, when, from where, and each consent
        status, page = await a.page(f"/audit/sessions/{sid}")
        assert status == 200
        for action in ("session.claimed", "session.consented", "channel.requested",
                       "channel.consented", "channel.opened", "recording.sealed",
                       "session.ended"):
            assert action in page, action
        assert "127.0.0.1" in page and "Alice Martin" in page

        # the recording, for the player and as a download
        status, body, headers = await get(a, f"/api/audit/sessions/{sid}/recordings/{cid}")
        assert status == 200 and b"audit-me-42" in body
        assert headers["Cache-Control"] == "no-store"
        status, body, headers = await get(a, f"/audit/sessions/{sid}/recordings/{cid}.cast")
        assert status == 200 and b"audit-me-42" in body
        assert headers["Content-Disposition"].startswith("attachment")
        assert json.loads(body.splitlines()[0])["version"] == 2

        # the session's events as JSONL and CSV
        status, body, _ = await get(a, f"/audit/sessions/{sid}/events.jsonl")
        lines = [json.loads(x) for x in body.splitlines()]
        assert status == 200 and {e["session_id"] for e in lines} == {sid}
        assert any(e["action"] == "session.consented" for e in lines)
        status, body, headers = await get(a, f"/audit/sessions/{sid}/events.csv")
        rows = list(csv.reader(io.StringIO(body.decode())))
        assert status == 200 and rows[0][:5] == ["seq", "time", "session_id", "actor", "action"]
        assert headers["Content-Type"].startswith("text/csv")
        assert len(rows) - 1 == len(lines)

        # a bundle that verifies on its own against the fingerprint from init
        status, body, _ = await get(a, f"/audit/sessions/{sid}/bundle.zip")
        assert status == 200
        bundle = broker.data.parent / "session-bundle.zip"
        bundle.write_bytes(body)
        names = zipfile.ZipFile(bundle).namelist()
        assert f"recordings/{sid}/{cid}.cast" in names
        fp = run_cli("init", "--data", str(broker.data)).stdout.split("Audit key fingerprint: ")[1]
        out = run_cli("audit", "verify", "--bundle", str(bundle), "--key-fingerprint",
                      fp.strip())
        assert out.returncode == 0 and out.stdout.startswith("OK: "), out.stdout

        # every look was itself audited, naming the auditor
        accessed = events(broker, "recording.accessed")
        assert [(e["actor"], e["how"]) for e in accessed] == [("carol", "play"),
                                                              ("carol", "download")]
        # named in the detail, not part of the session's own timeline (its technician
        # can read that, and must not learn who audited them)
        assert all(e["session"] == sid and e["session_id"] is None and e["channel"] == cid
                   for e in accessed)
        exported = events(broker, "audit.exported")
        assert [e["format"] for e in exported] == ["jsonl", "csv", "bundle"]
        assert {e["actor"] for e in exported} == {"carol"}
    finally:
        await a.close()
