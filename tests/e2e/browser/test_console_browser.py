"""The technician's whole flow in headless Chromium, against a real broker and client.

Sign in, enter the customer's code, open a shell, type into xterm.js, reload
(which only detaches), end the session — with no console error, uncaught
exception or CSP violation on any page. Browser fixtures: tests/e2e/conftest.py.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import sign_in, type_line, wait_terminal
from tests.helpers import Broker, Customer, T, Technician

pw = pytest.importorskip("playwright.async_api")
expect = pw.expect

pytestmark = pytest.mark.browser

MS = 1000  # Playwright counts in milliseconds
WAIT = 3 * T * MS
PROMPT = re.compile(r"[#$] *$", re.M)  # the shell's prompt, cursor cell included


async def sign_in_and_connect(page: Any, problems: Any, broker: Broker, customer: Customer) -> None:
    """Sign in as alice, enter the customer's code; returns once the customer said yes."""
    await sign_in(page, broker, "alice", PASSWORD)
    await expect(page.get_by_label("Session code")).to_be_visible(timeout=WAIT)

    cookies = {c["name"]: c for c in await page.context.cookies()}
    assert "__Host-tether" in cookies, cookies.keys()
    assert cookies["__Host-tether"]["httpOnly"]
    assert all(c["secure"] and c["sameSite"] == "Strict" for c in cookies.values()), cookies
    assert "__Host-tether=" not in await page.evaluate("document.cookie")

    code = await asyncio.to_thread(customer.code)
    await page.get_by_label("Session code").fill(code)
    await problems.check(page)
    await page.get_by_role("button", name="Connect").click()
    await page.wait_for_url(re.compile(r"/sessions/s_[\w-]+$"))
    await expect(page.locator("#consent-session")).to_have_text(
        "waiting for the customer", timeout=WAIT
    )
    await asyncio.to_thread(customer.accept_session)
    await expect(page.locator("#consent-session")).to_have_text("allowed", timeout=WAIT)
    await expect(page.locator("#session-state")).to_have_text("Active", timeout=WAIT)
    await expect(page.locator("#f-user")).to_have_text("root", timeout=WAIT)


async def test_technician_shell_reload_and_end(broker, customer, browser_page):
    page, problems = browser_page
    await sign_in_and_connect(page, problems, broker, customer)
    open_shell = page.get_by_role("button", name="Open shell")
    end_session = page.get_by_role("button", name="End session")
    status = page.locator("#shell-status")

    await open_shell.click()
    await expect(status).to_have_text("Waiting for the customer's answer…", timeout=WAIT)
    await asyncio.to_thread(customer.accept_shell)
    await expect(status).to_have_text("Connected", timeout=WAIT)
    await expect(page.locator("#consent-shell")).to_have_text("open", timeout=WAIT)
    await expect(open_shell).to_be_disabled()
    await wait_terminal(page, PROMPT, "a shell prompt")
    await type_line(page, "echo browser-$((40+2))")
    await wait_terminal(page, r"^browser-42 *$", "the command's output")
    # the customer watches the same shell live in their own terminal
    await asyncio.to_thread(customer.child.expect, "browser-42")
    await problems.check(page)

    # a reload only detaches: the new page re-attaches to the same shell by
    # itself, gets the scrollback, and typing reaches the shell again
    await page.reload()
    await wait_terminal(page, r"^browser-42 *$", "the scrollback after the reload")
    await expect(status).to_have_text("Connected", timeout=WAIT)
    await expect(page.locator("#consent-shell")).to_have_text("open", timeout=WAIT)
    await type_line(page, "echo again-$((6*7))")
    await wait_terminal(page, r"^again-42 *$", "output after re-attaching")
    await asyncio.to_thread(customer.child.expect, "again-42")

    # "End session" asks with the browser's own confirm(); Cancel changes nothing
    dialogs: list[str] = []
    answers = [False, True]

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        yes = answers.pop(0)
        asyncio.ensure_future(dialog.accept() if yes else dialog.dismiss())

    page.on("dialog", on_dialog)
    await end_session.click()
    await expect(end_session).to_be_enabled()
    await type_line(page, "echo still-$((7*6))")
    await wait_terminal(page, r"^still-42 *$", "output after a cancelled end")
    await expect(page.locator("#session-state")).to_have_text("Active")
    assert customer.child.isalive()

    await end_session.click()
    await expect(page.locator("#page-message")).to_contain_text(
        "This session has ended", timeout=WAIT
    )
    assert len(dialogs) == 2 and all("End this session?" in d for d in dialogs), dialogs
    await expect(page.locator("#session-state")).to_have_text("Ended", timeout=WAIT)
    await expect(status).to_have_text("Shell closed: the session ended", timeout=WAIT)
    await expect(end_session).to_be_disabled()
    await expect(open_shell).to_be_disabled()
    assert await asyncio.to_thread(customer.wait_exit) == 0
    await problems.check(page)


async def test_shell_refused_shows_refused(broker, customer, browser_page):
    page, problems = browser_page
    await sign_in_and_connect(page, problems, broker, customer)
    open_shell = page.get_by_role("button", name="Open shell")
    await open_shell.click()
    await asyncio.to_thread(customer.answer, "open a shell with full access", False)
    await expect(page.locator("#consent-shell")).to_contain_text("refused", timeout=WAIT)
    await expect(page.locator("#shell-status")).to_have_text(
        "Shell: refused by the customer", timeout=WAIT
    )
    await wait_terminal(page, r"refused by the customer", "the refusal")
    # the session itself goes on: the technician may ask again
    await expect(page.locator("#session-state")).to_have_text("Active")
    await expect(open_shell).to_be_enabled()
    await problems.check(page)


@pytest.mark.browser
async def test_dashboard_list_updates_live(broker, customer, browser_page):
    """A session claimed elsewhere appears on an open dashboard, and its state follows."""
    page, problems = browser_page
    await sign_in(page, broker, "alice", PASSWORD)
    await expect(page.get_by_label("Session code")).to_be_visible(timeout=WAIT)
    # the same technician claims a code from another device (no reload of this page)
    other = Technician(broker)
    try:
        await other.login("alice", PASSWORD)
        sid = await other.session_id(await asyncio.to_thread(customer.code))
        row = page.locator("#sessions-body tr", has_text=sid)
        await expect(row).to_have_count(1, timeout=WAIT)
        await asyncio.to_thread(customer.accept_session)
        await expect(row).to_contain_text("Active", timeout=WAIT)
        await expect(row).to_contain_text("root", timeout=WAIT)
        await other.end(sid)
        await expect(row).to_contain_text("Ended", timeout=WAIT)
        await problems.check(page)
    finally:
        await other.close()
