"""An admin manages accounts in headless Chromium, against a real broker.

The admin signs in through the real form (Username, Password, Authentication
code), opens Accounts from the top bar, adds a user and sees the new
authentication secret (once), then disables another user — with no console
error, uncaught exception or CSP violation on any page. The new user then
signs in with that secret; the disabled one cannot.

Screenshots: ``/tmp/admin-secret.png`` (the secret shown after adding) and
``/tmp/admin.png`` (the page after the disable).
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import sign_in as browser_sign_in
from tests.e2e.test_accounts import (
    B32,
    WRONG,
    audit,
    client,
    new_seed,
    sign_in,
    try_sign_in,
    unused_code,
    user_list,
)
from tests.helpers import Broker, T

pw = pytest.importorskip("playwright.async_api")
expect = pw.expect

pytestmark = pytest.mark.browser

WAIT = 3 * T * 1000  # Playwright counts in milliseconds


async def test_admin_adds_a_user_and_disables_another(broker: Broker, browser_page: Any) -> None:
    await asyncio.to_thread(broker.add_user, "adam", PASSWORD, "admin", "Adam Admin", "Acme IT")
    page, problems = browser_page

    await browser_sign_in(page, broker, "adam", PASSWORD)
    await page.wait_for_url(re.compile(r"/dashboard$"))
    await problems.check(page)

    await page.get_by_role("navigation", name="Main").get_by_role("link", name="Accounts").click()
    await page.wait_for_url(re.compile(r"/admin$"))
    await expect(page.get_by_role("heading", name="Accounts", exact=True)).to_be_visible()
    alice_row = page.locator('tr[data-user="alice"]')
    await expect(alice_row).to_contain_text("Active")
    await problems.check(page)

    # add a user: the secret and its otpauth URI are shown, once
    await page.get_by_label("User name").fill("erin")
    await page.get_by_label("Display name").fill("Erin Audit")
    await page.get_by_label("Organisation").fill("Acme Audit")
    await page.get_by_label("Role", exact=True).select_option("auditor")
    await page.get_by_label("Initial password").fill("erin's own password")
    await page.get_by_role("button", name="Add user").click()
    secret_box = page.get_by_role("alert")
    await expect(secret_box).to_contain_text("Authentication secret for erin", timeout=WAIT)
    await expect(page.get_by_role("status")).to_have_text("Added auditor erin.")
    lines = await secret_box.locator(".mono").all_inner_texts()
    seed = lines[0].strip()
    assert B32.fullmatch(seed), lines
    assert lines[1].startswith(f"otpauth://totp/Tether:erin?secret={seed}&issuer=Tether"), lines
    erin_row = page.locator('tr[data-user="erin"]')
    await expect(erin_row).to_contain_text("Erin Audit")
    await expect(erin_row.get_by_label("Role of erin")).to_have_value("auditor")
    await page.screenshot(path="/tmp/admin-secret.png", full_page=True)
    await problems.check(page)

    # disable another user
    await alice_row.get_by_role("button", name="Disable alice").click()
    await expect(page.get_by_role("status")).to_have_text("alice is disabled.", timeout=WAIT)
    await expect(alice_row).to_contain_text("Disabled")
    await expect(alice_row.get_by_role("button", name="Enable alice")).to_be_visible()
    await expect(page.get_by_text(seed)).to_have_count(0)  # the secret was shown only once
    await page.screenshot(path="/tmp/admin.png", full_page=True)
    await problems.check(page)

    users = await asyncio.to_thread(user_list, broker)
    assert (users["erin"]["role"], users["erin"]["disabled"]) == ("auditor", 0)
    assert users["alice"]["disabled"] == 1
    assert [(e["actor"], e["target"]) for e in audit(broker, "admin.user_added")] == [
        ("adam", "erin")]
    assert [(e["actor"], e["target"]) for e in audit(broker, "admin.user_disable")] == [
        ("adam", "alice")]

    # the shown secret works for erin; alice is out
    new_seed(broker, "erin", seed)
    erin = await client(broker, "127.0.0.2")
    await sign_in(erin, "erin", "erin's own password")
    assert erin.last_path == "/audit"
    await erin.close()
    other = await client(broker, "127.0.0.3")
    got = await try_sign_in(other, "alice", PASSWORD, unused_code(broker, "alice"))
    assert (got.status, got.error) == (401, WRONG)
    await other.close()
