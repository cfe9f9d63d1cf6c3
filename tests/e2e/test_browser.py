"""The technician's whole flow in headless Chromium, against a real broker and client."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.helpers import T, Broker, Customer

pytestmark = pytest.mark.browser

MS = 1000  # Playwright counts in milliseconds
PROMPT = re.compile(r"[#$] *$", re.M)


async def terminal_text(page: Any) -> str:
    text = await page.locator("#terminal .xterm-rows").inner_text()
    return text.replace("\xa0", " ")


async def wait_terminal(page: Any, pattern: re.Pattern[str] | str, what: str) -> str:
    """Poll the xterm DOM renderer's rows until ``pattern`` appears."""
    rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
    deadline = time.monotonic() + 3 * T
    text = ""
    while time.monotonic() < deadline:
        text = await terminal_text(page)
        if rx.search(text):
            return text
        await asyncio.sleep(0.1)
    raise AssertionError(f"terminal never showed {what}; it shows:\n{text!r}")


async def sign_in_and_connect(page: Any, broker: Broker, customer: Customer) -> None:
    await page.goto(broker.url + "/login")
    await page.get_by_label("Username").fill("alice")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in").click()
    code = await asyncio.to_thread(customer.code)
    await page.get_by_label("Session code").fill(code)
    await page.get_by_role("button", name="Connect").click()
    await page.wait_for_url(re.compile(r"/sessions/s_"))
    await asyncio.to_thread(customer.accept_session)
    await page.locator("#consent-session").filter(has_text="allowed").wait_for()


async def type_line(page: Any, line: str) -> None:
    await page.locator("#terminal .xterm-helper-textarea").focus()
    await page.keyboard.type(line)
    await page.keyboard.press("Enter")


async def assert_clean(page: Any, problems: Any) -> None:
    csp = await page.evaluate("window.__csp")
    assert csp == [], f"CSP violations: {csp}"
    assert problems.console == [], f"console errors: {problems.console}"
    assert problems.exceptions == [], f"uncaught exceptions: {problems.exceptions}"


async def test_technician_shell_reload_and_end(broker, customer, browser_page):
    page, problems = browser_page
    await sign_in_and_connect(page, broker, customer)
    await page.screenshot(path="/tmp/browser-1-active.png")

    await page.get_by_role("button", name="Open shell").click()
    await asyncio.to_thread(customer.accept_shell)
    await wait_terminal(page, PROMPT, "a shell prompt")
    await page.get_by_text("Connected").wait_for()
    await type_line(page, "echo browser-$((40+2))")
    await wait_terminal(page, r"^browser-42", "the command's output")
    # the customer watches the same shell live in their own terminal
    await asyncio.to_thread(customer.child.expect, "browser-42")
    await page.screenshot(path="/tmp/browser-2-shell.png")

    # a reload only detaches: the page re-attaches to the same shell by itself
    await page.reload()
    await wait_terminal(page, r"^browser-42", "the scrollback after a reload")
    await page.get_by_text("Connected").wait_for()
    await type_line(page, "echo again-$((6*7))")
    await wait_terminal(page, r"^again-42", "output after re-attaching")
    await asyncio.to_thread(customer.child.expect, "again-42")
    await page.screenshot(path="/tmp/browser-3-reattached.png")

    page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))
    await page.get_by_role("button", name="End session").click()
    await page.locator("#page-message").filter(has_text="This session has ended").wait_for()
    await page.locator("#session-state").filter(has_text="Ended").wait_for()
    assert await page.get_by_role("button", name="End session").is_disabled()
    assert await page.get_by_role("button", name="Open shell").is_disabled()
    assert await asyncio.to_thread(customer.wait_exit) == 0
    await page.screenshot(path="/tmp/browser-4-ended.png")
    await assert_clean(page, problems)


async def test_shell_refused_shows_refused(broker, customer, browser_page):
    page, problems = browser_page
    await sign_in_and_connect(page, broker, customer)
    await page.get_by_role("button", name="Open shell").click()
    await asyncio.to_thread(customer.answer, "open a shell with full access", False)
    await page.locator("#consent-shell").filter(has_text="refused").wait_for()
    await page.get_by_text("Shell: refused by the customer").first.wait_for()
    await page.screenshot(path="/tmp/browser-5-refused.png")
    await assert_clean(page, problems)
