"""Ending a session: by the customer (everything dies), by the technician, detach."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess

from tests.e2e.test_support_session import start_shell
from tests.helpers import T, script


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_customer_ctrl_c_kills_everything_even_setsid(tech, customer, broker):
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send("setsid sh -c 'echo escaped=$$; exec sleep 1000' &\r")
    m = await viewer.expect(rb"escaped=(\d+)")
    pid = int(m.group(1))
    await viewer.send("sleep 999 & echo child=$!\r")
    child = int((await viewer.expect(rb"child=(\d+)")).group(1))
    assert alive(pid) and alive(child)
    customer.child.expect("has a shell on this computer")
    assert customer.end() == 0
    assert not alive(pid) and not alive(child)
    code, controls = await viewer.closed()
    assert any(c.get("type") == "closed" for c in controls)
    s = await tech.wait_for(sid, lambda s: s["state"] == "ended", "ended")
    assert "customer" in s["end_reason"]
    journal = [json.loads(x) for x in customer.journal.read_text().splitlines()]
    events = [e["event"] for e in journal]
    assert events.index("channel_open") < events.index("ended")


async def test_technician_ends_session(tech, customer):
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.expect(r"# |\$ ")
    closing = asyncio.ensure_future(viewer.closed())  # a browser keeps reading
    status, body = await tech.end(sid)
    assert status == 200 and body["state"] == "ended"
    code, controls = await closing
    assert code == 1000
    assert {"type": "closed", "reason": "the session ended"} in controls
    assert customer.wait_exit() == 0
    assert "Session ended: ended by Alice Martin" in customer.child.before


async def test_reload_detaches_and_reattaches_with_a_fresh_secret(tech, customer):
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send("echo before-reload\r")
    await viewer.expect("before-reload\r\n")
    await viewer.ws.close()
    await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "detached", "detached")
    again = await tech.attach(sid, cid)
    await again.expect("before-reload")  # recent output is replayed
    await again.send("echo after-reload\r")
    await again.expect("after-reload\r\n")


async def test_detached_viewer_that_never_returns_closes_the_channel(tech, customer):
    # broker fixture runs with --pair-timeout 5
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.ws.close()
    s = await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "closed", "closed")
    assert "did not attach in time" in s["channels"][0]["reason"]
    customer.child.expect("Shell closed")


async def test_shell_exit_closes_channel_and_session_stays(tech, customer):
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send("exit 3\r")
    code, controls = await viewer.closed()
    assert {"type": "exit", "code": 3} in controls
    s = await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "closed", "closed")
    assert s["state"] == "active"
    assert "exited" in s["channels"][0]["reason"]


async def test_recording_matches_and_audit_verifies(tech, customer, broker):
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send("printf 'caf\\303\\251 %s\\n' $((7*6))\r")
    await viewer.expect("café 42".encode())
    # a password prompt: input typed while echo is off is not recorded
    await viewer.send("read -s secret; echo got-${#secret}\r")
    await asyncio.sleep(0.3)
    await viewer.send("hunter2\r")
    await viewer.expect("got-7")
    await tech.end(sid)
    customer.wait_exit()
    broker.stop()
    cast = broker.data / "recordings" / sid / f"{cid}.cast"
    events = [json.loads(x) for x in cast.read_text(encoding="utf-8").splitlines()[1:]]
    out = "".join(e[2] for e in events if e[1] == "o")
    typed = "".join(e[2] for e in events if e[1] == "i")
    assert "café 42" in out
    assert "got-7" in out
    assert "hunter2" not in typed and "hunter2" not in cast.read_text()
    assert "read -s secret" in typed
    times = [e[0] for e in events]
    assert times == sorted(times)
    assert any(e[1] == "m" and "echo off" in e[2] for e in events)
    # the output the viewer saw is what was recorded
    assert re.sub(r"\s+", "", "café 42") in re.sub(r"\s+", "", out)
    result = subprocess.run([script("tether-broker"), "audit", "verify", "--data",
                             str(broker.data)], capture_output=True, text=True, timeout=3 * T)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.match(r"OK: \d+ events, \d+ checkpoints, 1 recordings", result.stdout)
    # any change to the recording is caught
    with open(cast, "ab") as f:
        f.write(b'[99.0, "o", "forged"]\n')
    result = subprocess.run([script("tether-broker"), "audit", "verify", "--data",
                             str(broker.data)], capture_output=True, text=True, timeout=3 * T)
    assert result.returncode == 1 and "altered" in result.stdout
    os.truncate(cast, 0)
