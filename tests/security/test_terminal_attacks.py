"""Attacks through what a terminal shows: a hostile customer against the technician's
browser, disguised names, and a hostile technician against the customer's watch view.

* A customer's shell prints ``X ESC[2147483647b`` (repeat the last character two
  billion times). The technician's tab must stay responsive and show what follows,
  a second tab attaching (and getting the broker's replay) too, and so must the
  auditor's player of the recording (issue 10, item 1).
* A machine and user named with zero-width and other invisible characters show
  without them on the console, and a technician's name with them shows without
  them in the customer's prompt (item 2).
* A technician's prompt that conceals what is typed (``PS1='T$ \\[\\e[8m\\]'``)
  cannot hide the typed command from the customer's live view, and the customer's
  own log keeps the whole output, including what a CR drew over (item 4).

Real broker, real ``tether-client`` in a real PTY, headless Chromium.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import secrets
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.conftest import PASSWORD
from tests.e2e import conftest as e2e
from tests.e2e.browser.test_terminal_safety import (
    hostile_customer,
    open_session,
    open_terminal,
)
from tests.e2e.conftest import sign_in, terminal_text, type_line
from tests.e2e.test_support_session import start_shell
from tests.helpers import Broker, Customer, T, Technician

pw = pytest.importorskip("playwright.async_api")
chromium, browser_page = e2e.chromium, e2e.browser_page  # the browser tests' fixtures
expect = pw.expect

WAIT = 3 * T * 1000  # Playwright counts in milliseconds
#: repeat, insert/delete/erase characters and lines, scroll up/down, tabs forward/back:
#: each with a count of 2^31 - 1 (a real customer's shell prints it with ``printf``)
BOMBS = "b@PXLMSTIZ"
BOMB = "printf '" + "".join(f"X\\033[2147483647{f}" for f in BOMBS) + "\\r\\n'"


async def responsive(page: Any) -> None:
    """The page's JavaScript still answers (a frozen renderer never does)."""
    assert await asyncio.wait_for(page.evaluate("() => 6 * 7"), 2 * T) == 42


async def shows(page: Any, text: str) -> str:
    """Waits (bounded) until the terminal's rows show ``text``; returns them."""
    screen = ""
    for _ in range(int(60 * T)):
        screen = await asyncio.wait_for(terminal_text(page), 2 * T)
        if text in screen:
            return screen
        await asyncio.sleep(0.05)
    raise AssertionError(f"the terminal never showed {text!r}:\n{screen}")


# --- item 1: the repeat bomb ------------------------------------------------------------------


async def test_a_repeat_bomb_freezes_neither_the_technicians_tab_nor_a_reattaching_one(
        broker: Broker, customers: list[Customer], tmp_path: Path, browser_page: Any) -> None:
    page, problems = browser_page
    customer = hostile_customer(broker, tmp_path / "customer")
    customers.append(customer)
    await open_session(page, problems, broker, customer)
    url = page.url
    await open_terminal(page, customer)
    await type_line(page, f"{BOMB}; echo after-$((6*7))")
    await responsive(page)
    screen = await shows(page, "after-42")
    assert "X" * 2000 not in screen.replace("\n", "")  # bounded: at most a few rows of X
    second = await page.context.new_page()
    await page.close()  # the viewer detaches; the broker keeps the output for the next
    await second.goto(url)  # a new tab re-attaches: the broker replays the bomb to it
    await responsive(second)
    await shows(second, "after-42")  # the replay reached it
    await type_line(second, "echo later-$((6*7))")
    await shows(second, "later-42")
    await responsive(second)


async def test_the_player_plays_a_recording_with_a_repeat_bomb(
        broker: Broker, tech: Technician, customer: Customer, browser_page: Any) -> None:
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send(f"{BOMB}; echo played-$((6*7))\r")
    await viewer.expect("played-42")
    status, _ = await tech.end(sid)
    assert status == 200
    assert await asyncio.to_thread(customer.wait_exit) == 0
    raw = (broker.data / "recordings" / sid / f"{cid}.cast").read_text()
    assert all(f"\\u001b[2147483647{f}" in raw for f in BOMBS)  # the recording stays raw

    await asyncio.to_thread(broker.add_user, "carol", PASSWORD, "auditor", "Carol Audit",
                            "Acme Audit")
    page, _problems = browser_page
    await sign_in(page, broker, "carol", PASSWORD)
    await page.goto(f"{broker.url}/audit/sessions/{sid}")
    # what the page hands the player: the same bounds as the live view
    played = await page.evaluate(
        "async (url) => (await fetch(url, {credentials: 'same-origin'})).text()",
        f"/api/audit/sessions/{sid}/recordings/{cid}")
    output = "".join(e[2] for e in map(json.loads, played.splitlines()[1:]) if e[1] == "o")
    counts = re.findall(r"\x1b\[(\d+)([b@PXLMSTIZ])", output)
    assert {f for _, f in counts} == set(BOMBS)  # each one is there, bounded
    assert all(int(n) <= 1000 for n, _ in counts), counts
    await page.get_by_role("button", name=f"Play recording {cid}").click()
    await responsive(page)
    screen = page.frame_locator("#player-frame").locator(".ap-term-text")
    await expect(screen).to_contain_text("played-42", timeout=WAIT)
    await responsive(page)


# --- item 2: invisible characters in names --------------------------------------------------


async def test_invisible_characters_do_not_disguise_a_customers_names(
        broker: Broker, customers: list[Customer], tmp_path: Path, browser_page: Any) -> None:
    page, problems = browser_page
    customer = hostile_customer(broker, tmp_path / "customer", machine="adm\u200bin-pc",
                                user="ro\u2060o\ufefft\U000e0041")
    customers.append(customer)
    sid = await open_session(page, problems, broker, customer)
    machine, user = page.locator("#f-machine"), page.locator("#f-user")
    await expect(machine).to_have_text("admin-pc", timeout=WAIT)
    await expect(user).to_have_text("root", timeout=WAIT)
    for where in (f"/sessions/{sid}", "/dashboard", "/audit", f"/audit/sessions/{sid}"):
        await page.goto(broker.url + where)
        await page.wait_for_load_state("networkidle")
        text = await page.locator("body").inner_text()
        assert not re.search("[\u200b\u2060\ufeff\U000e0000-\U000e007f]", text), where
    await page.goto(f"{broker.url}/audit/sessions/{sid}")
    assert "admin-pc" in await page.locator("body").inner_text()


async def test_invisible_characters_do_not_disguise_the_technician_to_the_customer(
        tmp_path: Path) -> None:
    from tests.client.test_untrusted_broker import client, fake_broker
    from tether.protocol import codes

    frames = [
        json.dumps({"type": "code", "code": codes.generate(), "expires_in": 600}),
        json.dumps({"type": "claimed", "session": "s_x", "technician": "Dr Ad\u200bmin",
                    "org": "Bank\u2060 IT\U000e0041"}),
    ]
    runner, url, _ = await fake_broker(tmp_path / "d", frames)
    child = client(url, tmp_path / "d", tmp_path)
    try:
        await asyncio.to_thread(child.expect, "entered your code")
        seen = child.before + child.after
        assert "Dr Admin" in seen and "Bank IT" in seen, seen
        assert not re.search("[\u200b\u2060\U000e0000-\U000e007f]", seen), seen
    finally:
        child.terminate(force=True)
        await runner.cleanup()


# --- item 4: a technician hiding commands from the customer's view ---------------------------

SGR = re.compile(r"\x1b\[([0-9;:]*)m")
ANY_ESC = re.compile(r"\x1b(?:\[[0-9;:?<=>]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|.)")


def styled_chars(stream: str) -> list[tuple[str, dict[str, Any]]]:
    """Each character a terminal draws from ``stream``, with the SGR state it is drawn in."""
    state: dict[str, Any] = {"conceal": False, "faint": False, "reverse": False,
                             "fg": None, "bg": None}
    out: list[tuple[str, dict[str, Any]]] = []
    pos = 0
    for m in ANY_ESC.finditer(stream):
        out.extend((ch, dict(state)) for ch in stream[pos:m.start()] if ch >= " ")
        pos = m.end()
        sgr = SGR.fullmatch(m.group())
        if not sgr:
            continue
        fields = [f.split(":") for f in (sgr.group(1) or "0").split(";")]
        i = 0
        while i < len(fields):
            code, sub = int(fields[i][0] or 0), fields[i][1:]
            i += 1
            if code in (38, 48):
                if sub:
                    colour = tuple(sub)
                else:
                    n = 2 if fields[i][0] == "5" else 4
                    colour, i = tuple(f[0] for f in fields[i:i + n]), i + n
                state["fg" if code == 38 else "bg"] = colour
            elif code == 0:
                state.update(conceal=False, faint=False, reverse=False, fg=None, bg=None)
            elif code in (8, 28):
                state["conceal"] = code == 8
            elif code in (2, 22):
                state["faint"] = code == 2
            elif code in (7, 27):
                state["reverse"] = code == 7
            elif 30 <= code <= 37 or 90 <= code <= 97:
                state["fg"] = ("5", str(code - 30 if code < 90 else code - 82))
            elif 40 <= code <= 47 or 100 <= code <= 107:
                state["bg"] = ("5", str(code - 40 if code < 100 else code - 92))
            elif code == 39:
                state["fg"] = None
            elif code == 49:
                state["bg"] = None
    out.extend((ch, dict(state)) for ch in stream[pos:] if ch >= " ")
    return out


def drawn_visibly(stream: str, needle: str) -> bool:
    """Whether ``needle`` is drawn somewhere in ``stream`` neither concealed, faint nor
    in the colour of its background."""
    chars = styled_chars(stream)
    text = "".join(ch for ch, _ in chars)
    start = text.find(needle)
    while start >= 0:
        styles = [s for _, s in chars[start:start + len(needle)]]
        if not any(s["conceal"] or s["faint"] or (s["fg"] is not None and s["fg"] == s["bg"])
                   or (s["reverse"] and s["fg"] is None and s["bg"] is not None)
                   for s in styles):
            return True
        start = text.find(needle, start + 1)
    return False


def test_the_style_check_sees_each_trick() -> None:
    assert drawn_visibly("a \x1b[1;31mtouch x\x1b[0m", "touch x")
    for trick in ("\x1b[8m", "\x1b[2m", "\x1b[31;41m", "\x1b[38;5;4;48;5;4m", "\x1b[7;44m"):
        assert not drawn_visibly(f"{trick}touch x", "touch x"), trick


async def test_a_concealing_prompt_hides_no_command_from_the_customer(
        broker: Broker, tech: Technician, customer: Customer) -> None:
    seen = io.StringIO()
    customer.child.logfile_read = seen  # everything the client wrote to the customer's screen
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send("PS1='T$ \\[\\e[8m\\]'; PS0='\\e[0m'; echo ready-$((6*7))\r")
    await viewer.expect("ready-42")
    word = f"hidden-{secrets.token_hex(3)}"
    command = f"true {word}"
    await viewer.send(command + "\r")
    await viewer.expect(r"T\$ ")
    # ... and text drawn over with CR (and spaces) before the customer could read it
    await viewer.send(f"printf 'drawn-over-{word}\\r%40s\\r\\n' ''; echo done-$((6*7))\r")
    await viewer.expect("done-42")
    await asyncio.to_thread(customer.child.expect, "done-42")
    assert drawn_visibly(seen.getvalue(), command), seen.getvalue()[-2000:]

    status, _ = await tech.end(sid)
    assert status == 200
    assert await asyncio.to_thread(customer.wait_exit) == 0
    journal = [json.loads(x) for x in customer.journal.read_text().splitlines()]
    logged = "".join(e["text"] for e in journal if e["event"] == "output")
    assert command in logged
    assert f"drawn-over-{word}\r" in logged
    assert "\x1b[8m" not in logged


async def test_the_customers_log_keeps_the_output_even_without_the_watch_view(
        broker: Broker, tech: Technician, customers: list[Customer], tmp_path: Path) -> None:
    customer = Customer(broker, "--consent-timeout", "5", "--no-watch", tmp=tmp_path)
    customers.append(customer)
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send("echo unwatched-$((6*7))\r")
    await viewer.expect("unwatched-42")
    status, _ = await tech.end(sid)
    assert status == 200
    await asyncio.to_thread(customer.child.expect, pexpect.EOF, 3 * T)
    journal = [json.loads(x) for x in customer.journal.read_text().splitlines()]
    assert "unwatched-42" in "".join(e["text"] for e in journal if e["event"] == "output")
