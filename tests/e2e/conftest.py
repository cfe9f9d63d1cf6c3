"""Headless Chromium for the browser tests, trusting only the test broker's key.

The broker's certificate comes from a private CA the browser does not know.
Rather than turning certificate checks off for the whole context
(``ignore_https_errors``), Chromium is told to accept exactly one public key:
``--ignore-certificate-errors-spki-list`` with the SHA-256 of the broker
certificate's SubjectPublicKeyInfo. Any other certificate still fails.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.helpers import Broker, T

CHROMIUM = os.environ.get("TETHER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

#: Records the CSP violations a document sees, from before any of its own
#: scripts run: into ``window.__csp`` (read by the test before it leaves a
#: page) and through a binding to Python, so no page of the flow is missed.
CSP_RECORDER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  const v = {page: location.pathname, directive: e.violatedDirective, blocked: e.blockedURI,
             source: e.sourceFile, line: e.lineNumber, sample: e.sample};
  window.__csp.push(v);
  if (typeof window.__tetherCsp === 'function') window.__tetherCsp(v);
});
"""


def spki_sha256(cert_pem: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class PageProblems:
    """Console errors, uncaught exceptions and CSP violations seen by a page."""

    def __init__(self) -> None:
        self.console: list[str] = []
        self.exceptions: list[str] = []
        self.csp: list[dict[str, Any]] = []

    def watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.exceptions.append(str(exc)))

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.console.append(f"{msg.text} @ {msg.location}")

    async def check(self, page: Any) -> None:
        """No console error, uncaught exception or CSP violation so far."""
        on_page = await page.evaluate("window.__csp")
        assert on_page == [], f"CSP violations on {page.url}: {on_page}"
        assert self.csp == [], f"CSP violations: {self.csp}"
        assert self.console == [], "console errors:\n" + "\n".join(self.console)
        assert self.exceptions == [], "uncaught exceptions:\n" + "\n".join(self.exceptions)


_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call" and report.failed:
        item.stash[_FAILED] = True  # read by browser_page's teardown
    return report


@pytest.fixture
async def chromium(broker: Broker) -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    pin = spki_sha256(broker.data / "certs" / "broker.pem")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                f"--ignore-certificate-errors-spki-list={pin}",
            ],
            timeout=3 * T * 1000,
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser_page(
    chromium: Any, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[Any, PageProblems]]:
    """A fresh context and page with its problems recorded; a screenshot if the test fails."""
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(3 * T * 1000)
    problems = PageProblems()
    await context.expose_binding("__tetherCsp", lambda source, v: problems.csp.append(v))
    await context.add_init_script(CSP_RECORDER)
    page = await context.new_page()
    problems.watch(page)
    try:
        yield page, problems
    finally:
        if request.node.stash.get(_FAILED, False):
            shot = Path(f"/tmp/browser-failure-{request.node.name}.png")
            try:
                await page.screenshot(path=str(shot), full_page=True, timeout=T * 1000)
                print(f"screenshot of the failing page: {shot}")
            except Exception as exc:  # the page may be gone; the failure itself matters more
                print(f"no screenshot: {exc}")
        await context.close()


async def sign_in(page: Any, broker: Broker, name: str, password: str) -> None:
    """Sign in through the real form: Username, Password, Authentication code."""
    await page.goto(broker.url + "/login")
    await page.get_by_label("Username").fill(name)
    await page.get_by_label("Password").fill(password)
    await page.get_by_label("Authentication code").fill(await broker.totp_code(name))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state()


async def terminal_text(page: Any) -> str:
    """What the xterm.js DOM renderer shows, one line per row."""
    text = await page.locator("#terminal .xterm-rows").inner_text()
    return text.replace("\xa0", " ")


async def wait_terminal(page: Any, pattern: re.Pattern[str] | str, what: str) -> str:
    rx = re.compile(pattern, re.M) if isinstance(pattern, str) else pattern
    deadline = time.monotonic() + 3 * T
    text = ""
    while time.monotonic() < deadline:
        text = await terminal_text(page)
        if rx.search(text):
            return text
        await asyncio.sleep(0.05)
    raise AssertionError(f"the terminal never showed {what}; it shows:\n{text}")


async def type_line(page: Any, line: str, enter: bool = True) -> None:
    await page.locator("#terminal .xterm-helper-textarea").focus()
    await page.keyboard.type(line)
    if enter:
        await page.keyboard.press("Enter")
