"""The customer decides: refusals, timeouts, three strikes, no terminal."""

from __future__ import annotations

import json
import subprocess

import pexpect
import pytest

from tests.helpers import Customer, T, script


async def claimed(tech, customer) -> str:
    return await tech.session_id(customer.code())


async def test_session_refused_ends_the_session(tech, customer):
    sid = await claimed(tech, customer)
    customer.answer("wants to start a remote support session", False)
    s = await tech.wait_for(sid, lambda s: s["state"] == "ended", "session end")
    assert s["consent"] == "refused"
    assert "refused" in s["end_reason"]
    assert s["customer"] is None  # nothing about the machine without a yes
    assert customer.wait_exit() == 0
    status, page = await tech.page(f"/sessions/{sid}")
    assert status == 200 and "refused" in page


async def test_shell_refused_then_three_strikes(tech, customer):
    sid = await claimed(tech, customer)
    customer.accept_session()
    await tech.wait_for(sid, lambda s: s["state"] == "active", "active")
    for n in range(3):
        await tech.open_shell(sid)
        customer.answer("open a shell with full access", False)
        await tech.wait_for(sid, lambda s, n=n: s["channels"][n]["state"] == "refused", "no")
    # the fourth request is refused without a prompt on the customer's screen
    await tech.open_shell(sid)
    s = await tech.wait_for(sid, lambda s: s["channels"][3]["state"] == "refused", "auto-no")
    assert "3 times" in s["channels"][3]["reason"]
    with pytest.raises(pexpect.TIMEOUT):
        customer.child.expect(r"\[y/N\]", timeout=1)
    journal = [json.loads(x) for x in customer.journal.read_text().splitlines()]
    decisions = [e for e in journal if e["event"] == "decision" and e.get("kind") == "terminal"]
    assert [d["allow"] for d in decisions] == [False, False, False]


async def test_no_answer_is_a_no(tech, customer):
    sid = await claimed(tech, customer)
    customer.accept_session()
    await tech.wait_for(sid, lambda s: s["state"] == "active", "active")
    await tech.open_shell(sid)
    customer.child.expect(r"\[y/N\] ")
    customer.child.expect("No answer: refused", timeout=3 * T)  # client timeout is 5 s
    s = await tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "refused", "timeout")
    assert s["channels"][0]["reason"] == "the customer did not answer"


async def test_keystrokes_typed_before_the_prompt_do_not_answer_it(tech, customer):
    code = customer.code()
    customer.child.send("y\n")  # typed ahead, before anyone asked anything
    sid = await tech.session_id(code)
    customer.child.expect(r"\[y/N\] ")
    customer.child.sendline("n")
    s = await tech.wait_for(sid, lambda s: s["state"] == "ended", "refused")
    assert s["consent"] == "refused"


async def test_without_a_terminal_every_request_is_refused(tech, broker, tmp_path):
    proc = subprocess.Popen(
        [script("tether-client"), "--broker", broker.url, "--ca", str(broker.ca),
         "--allow-root", "--log", str(tmp_path / "c.log")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        code = None
        for _ in range(20):
            line = proc.stdout.readline()
            if line.startswith("Session code:"):
                code = line.split(":", 1)[1].strip()
                break
        assert code
        sid = await tech.session_id(code)
        s = await tech.wait_for(sid, lambda s: s["state"] == "ended", "refusal")
        assert s["consent"] == "refused"
        out, _ = proc.communicate(timeout=3 * T)
        assert "No terminal to ask you on, so this is refused" in out
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


async def test_client_disconnecting_mid_prompt_ends_the_session(tech, customer, broker):
    sid = await claimed(tech, customer)
    customer.child.expect(r"\[y/N\] ")
    customer.close()  # SIGKILL while the customer is being asked
    s = await tech.wait_for(sid, lambda s: s["state"] == "ended", "end")
    assert "disconnected" in s["end_reason"]
    assert broker.alive()


async def test_names_from_the_broker_are_cleaned_before_printing(broker, tmp_path):
    from tests.helpers import Technician

    broker.add_user("mallory", "mallory-password", display="Mallory\x1b[2K\rBank\u202eTI",
                    org="Evil\x07Corp")
    tech = Technician(broker)
    customer = Customer(broker, tmp=tmp_path)
    try:
        await tech.login("mallory", "mallory-password")
        await tech.session_id(customer.code())
        customer.child.expect(r"\[y/N\] ")
        shown = customer.child.before
        assert "MalloryBankTI (EvilCorp)" in shown
        assert "\x1b[2K" not in shown and "\u202e" not in shown and "\x07" not in shown
    finally:
        customer.close()
        await tech.close()
