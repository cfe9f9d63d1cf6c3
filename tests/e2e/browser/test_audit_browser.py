"""An auditor replays a real recorded shell in headless Chromium.

A technician runs ``echo`` in a real customer's shell; an auditor then signs in,
finds the session with the Audit search form, opens its record, plays the
recording in the sandboxed player frame and sees the command's output there,
jumps to markers and changes the speed, with no console error, uncaught
exception or CSP violation anywhere. The frame is checked to really be
sandboxed (opaque origin: no cookies, no API, no access to the page), and the
player page to carry ``frame-ancestors 'self'``.

Set ``TETHER_SCREENSHOTS=DIR`` to keep screenshots of the pages
(``DIR/audit-list.png``, ``DIR/audit-session.png``).
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import sign_in
from tests.e2e.test_support_session import start_shell
from tests.helpers import Broker, Customer, T, Technician

pw = pytest.importorskip("playwright.async_api")
expect = pw.expect

pytestmark = pytest.mark.browser

WAIT = 3 * T * 1000  # Playwright counts in milliseconds
SHOTS = os.environ.get("TETHER_SCREENSHOTS")


async def shot(page: Any, name: str) -> None:
    if SHOTS:
        await page.screenshot(path=str(Path(SHOTS) / name), full_page=True)


async def recorded_session(tech: Technician, customer: Customer, word: str) -> tuple[str, str]:
    """A session whose shell printed ``<word>-42``, ended by the technician a second later.

    The second keeps the "channel closed" marker (timed from the audit log)
    clearly after the output in the recording (timed by the recorder).
    """
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send(f"echo {word}-$((6*7))\r")
    await viewer.expect(f"{word}-42")
    await asyncio.sleep(1)
    status, _ = await tech.end(sid)
    assert status == 200
    assert await asyncio.to_thread(customer.wait_exit) == 0
    return sid, cid


def player_frame(page: Any) -> Any:
    """The player's document (a real Frame, for evaluate())."""
    for frame in page.frames:
        if frame.url.endswith("/audit/player"):
            return frame
    raise AssertionError(f"no player frame among {[f.url for f in page.frames]}")


async def test_auditor_plays_a_recording_in_the_sandboxed_player(
    broker: Broker, tech: Technician, customer: Customer, browser_page: Any
) -> None:
    word = f"played-{secrets.token_hex(3)}"
    sid, cid = await recorded_session(tech, customer, word)
    line = f"{word}-42"  # the shell's output; the typed command reads "$((6*7))"
    await asyncio.to_thread(broker.add_user, "carol", PASSWORD, "auditor", "Carol Audit",
                            "Acme Audit")
    page, problems = browser_page

    # sign in as the auditor, find the session with the search form
    await sign_in(page, broker, "carol", PASSWORD)
    await page.goto(broker.url + "/audit")
    await page.get_by_label("Technician").fill("alice")
    await page.get_by_label("Outcome").select_option("completed")
    await page.get_by_role("button", name="Search").click()
    await page.wait_for_url(re.compile(r"/audit\?.*technician=alice"))
    row = page.locator(f'tr[data-session-id="{sid}"]')
    await expect(row).to_contain_text("Alice Martin")
    await shot(page, "audit-list.png")
    await problems.check(page)
    async with page.expect_response(lambda r: r.url.endswith("/audit/player")) as framed:
        await row.get_by_role("link", name="Open").click()
    await page.wait_for_url(re.compile(rf"/audit/sessions/{sid}$"))
    await expect(page.locator("h1")).to_contain_text(sid)

    # Play: the recording arrives in the frame and the shell's output appears
    frame = page.frame_locator("#player-frame")
    screen = frame.locator(".ap-term-text")
    await page.get_by_role("button", name=f"Play recording {cid}").click()
    await expect(page.locator("#player-area")).to_be_visible()
    await expect(screen).to_contain_text(line, timeout=WAIT)
    await expect(page.locator("#player-area")).to_have_attribute("aria-busy", "false")
    status = page.locator("#player-status")
    await expect(status).to_contain_text(re.compile(r"^(Playing|Ended) at "), timeout=WAIT)

    # markers from the audit log, as buttons; jumping moves the player there
    start = page.get_by_role("button", name=re.compile(r"^Jump to 0:00\.0 session consented$"))
    closed = page.get_by_role("button", name=re.compile(r"^Jump to [\d:.]+ channel closed$"))
    await expect(start).to_be_visible()
    await expect(closed).to_be_visible()
    await expect(status).to_contain_text("Ended at", timeout=WAIT)  # a short recording
    await start.click()
    await expect(status).to_contain_text("Paused at 0:00", timeout=WAIT)
    await expect(screen).not_to_contain_text(line, timeout=WAIT)  # before the echo
    await expect(start).to_have_attribute("aria-current", "true")
    await closed.click()
    await expect(screen).to_contain_text(line, timeout=WAIT)
    await expect(closed).to_have_attribute("aria-current", "true")

    # another speed re-creates the player where it was, still showing the output
    await page.get_by_label("Speed").select_option("4")
    await expect(status).to_contain_text("Paused at", timeout=WAIT)
    await expect(screen).to_contain_text(line, timeout=WAIT)
    await start.click()
    await expect(screen).not_to_contain_text(line, timeout=WAIT)
    await page.locator("#player-toggle").click()  # play from the start, at 4x
    await expect(screen).to_contain_text(line, timeout=WAIT)
    await expect(status).to_contain_text("Ended at", timeout=WAIT)
    await shot(page, "audit-session.png")
    await problems.check(page)

    # the player page, as the browser got it, may only be framed by the console itself
    headers = await (await framed.value).all_headers()
    csp = headers["content-security-policy"]
    assert "frame-ancestors 'self'" in csp and "default-src 'none'" in csp, csp
    assert "connect-src" not in csp  # default-src 'none' covers it: no network from the frame

    # a recording that is gone says so in a visible alert
    (broker.data / "recordings" / sid / f"{cid}.cast").unlink()
    await page.reload()
    await page.get_by_role("button", name=f"Play recording {cid}").click()
    await expect(page.get_by_role("alert")).to_contain_text("not available", timeout=WAIT)
    # Chromium logs every 4xx fetch as a console error: that one is expected
    for _ in range(int(T * 20)):
        if any("status of 404" in m for m in problems.console):
            break
        await asyncio.sleep(0.05)
    problems.console = [m for m in problems.console if "status of 404" not in m]
    await problems.check(page)

    # the frame really is sandboxed: an opaque origin without cookies, API or page
    player = player_frame(page)
    assert await page.locator("#player-frame").get_attribute("sandbox") == "allow-scripts"
    assert await player.evaluate("self.origin") == "null"
    seen = await player.evaluate("""async () => {
        const tries = {};
        try { tries.cookie = document.cookie; } catch (e) { tries.cookie = e.name; }
        try { tries.parent = window.parent.document.title; } catch (e) { tries.parent = e.name; }
        try { tries.storage = typeof localStorage.length; } catch (e) { tries.storage = e.name; }
        try {
          const r = await fetch('/api/sessions', {credentials: 'include'});
          tries.fetch = r.status;
        } catch (e) { tries.fetch = e.name; }
        return tries;
    }""")
    assert seen == {"cookie": "SecurityError", "parent": "SecurityError",
                    "storage": "SecurityError", "fetch": "TypeError"}, seen
    # the refused fetch is the only problem, and the frame's CSP refused it
    await asyncio.sleep(0.5)  # console messages and CSP reports arrive on their own
    assert problems.csp and all(v["page"] == "/audit/player" and v["directive"] == "connect-src"
                                and v["blocked"].endswith("/api/sessions")
                                for v in problems.csp), problems.csp
    assert all("/api/sessions" in m for m in problems.console), problems.console
    assert problems.exceptions == [], problems.exceptions
