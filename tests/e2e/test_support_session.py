"""A whole support session with real processes: broker, client in a PTY, technician."""

from __future__ import annotations

import json
import re

from tests.helpers import Customer, Technician


async def start_shell(tech: Technician, customer: Customer) -> tuple[str, str]:
    code = customer.code()
    sid = await tech.session_id(code)
    customer.accept_session()
    await tech.wait_for(sid, lambda s: s["state"] == "active", "session consent")
    cid = await tech.open_shell(sid, 100, 30)
    customer.accept_shell()
    await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "pairing", "channel yes")
    return sid, cid


async def test_happy_path_shell_output_resize_and_watch(tech, customer, broker):
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    s = await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "open", "open")
    assert s["customer"]["user"] == "root"
    await viewer.send("stty size; echo hello-$((6*7))\r")
    await viewer.expect(r"30 100")
    await viewer.expect(r"hello-42")
    # the customer watches the same output live in their own terminal
    customer.child.expect("hello-42")
    await viewer.resize(132, 43)
    await viewer.send("stty size\r")
    await viewer.expect(r"43 132")
    status, _ = await tech.end(sid)
    assert status == 200
    assert customer.wait_exit() == 0
    cast = (broker.data / "recordings" / sid / f"{cid}.cast").read_text()
    lines = [json.loads(line) for line in cast.splitlines()]
    assert lines[0]["version"] == 2 and lines[0]["width"] == 100
    out = "".join(e[2] for e in lines[1:] if e[1] == "o")
    assert "hello-42" in out
    assert any(e[1] == "r" and e[2] == "132x43" for e in lines[1:])
    assert any(e[1] == "i" and "stty size" in e[2] for e in lines[1:])
    assert re.search(r"consent: shell allowed", cast)
