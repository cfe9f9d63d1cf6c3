"""Headless Chromium for the browser tests, trusting only the test broker's key.

The broker's certificate comes from a private CA the browser does not know.
Rather than turning certificate checks off for the whole context
(``ignore_https_errors``), Chromium is told to accept exactly one public key:
``--ignore-certificate-errors-spki-list`` with the SHA-256 of the broker
certificate's SubjectPublicKeyInfo. Any other certificate still fails.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.helpers import T, Broker

CHROMIUM = os.environ.get("TETHER_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"

#: records CSP violations the page sees, from before any of its scripts run
CSP_RECORDER = """
window.__csp = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__csp.push({directive: e.violatedDirective, blocked: e.blockedURI,
                     source: e.sourceFile, line: e.lineNumber, sample: e.sample});
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

    def watch(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.exceptions.append(str(exc)))

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.console.append(f"{msg.text} @ {msg.location}")


@pytest.fixture
async def chromium(broker: Broker) -> AsyncIterator[Any]:
    playwright_api = pytest.importorskip("playwright.async_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    pin = spki_sha256(broker.data / "certs" / "broker.pem")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking",
                  f"--ignore-certificate-errors-spki-list={pin}"],
            timeout=3 * T * 1000,
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser_page(chromium: Any) -> AsyncIterator[tuple[Any, PageProblems]]:
    """A fresh context and page, with its problems recorded; screenshot on failure."""
    context = await chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(3 * T * 1000)
    await context.add_init_script(CSP_RECORDER)
    page = await context.new_page()
    problems = PageProblems()
    problems.watch(page)
    try:
        yield page, problems
    finally:
        await context.close()
