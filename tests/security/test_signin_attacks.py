"""Attacks on signing in: password guessing, user-name probing, TOTP replay and theft,
floods, device cookies, logins left behind.

The broker's sign-in throttle (no flags: its defaults) lets 5 failures per account and
per source address go free in 10 minutes, then doubles a delay after each further
failure (1 s, 2 s, 4 s, ...). There is no lock-out: the owner signs in once the delay
has passed. Every failure gets the same answer, whether the name exists or not.

A browser that signed a user in gets a device cookie for that user (OWASP's "device
cookies"): its attempts for that user skip the shared delays and the shared password
queue and have a failure budget of their own (5 in 10 minutes); a forged, another
user's, revoked or locked cookie counts as none.
"""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
import sqlite3
import statistics
import time

import aiohttp
import pytest
from yarl import URL

from tests.helpers import Broker, T, run_cli
from tests.security.conftest import Site
from tests.security.tools import (
    PASSWORD,
    Browser,
    session_cookie,
    sign_in_flood,
    totp_now,
    wss,
)

WRONG = "Wrong username, password or authentication code"
DEVICE = "__Host-tether-device"
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
SPOOF = {"X-Forwarded-For": "198.51.100.77", "X-Real-IP": "198.51.100.78",
         "Forwarded": "for=198.51.100.79", "True-Client-IP": "198.51.100.80"}


@pytest.fixture(scope="module")
def site(start_broker) -> Site:
    return start_broker(technician=22)


@pytest.fixture
def broker(site: Site) -> Broker:
    return site.broker


def same_page(page: str) -> str:
    """The page with its per-visitor form token blanked out."""
    return re.sub(r'(name="csrf(?:-token)?" (?:content|value)=")[^"]+', r"\1", page)


async def signs_in(broker: Broker, name: str, ip: str) -> None:
    b = Browser(broker, ip)
    try:
        status, _, headers = await b.try_login(name, PASSWORD, totp_now(broker, name))
        assert status == 303 and headers["Location"] == "/dashboard", status
    finally:
        await b.close()


async def test_guessing_one_accounts_password_grows_the_delay_but_never_locks_out(site, broker):
    """The attacker guesses one account's password from one address. The first 5 misses
    are answered at once (401, the same wording each time); then every try waits a
    delay that doubles (429 with Retry-After 1, then 2), from any address, because it
    follows the account. Once the delay has passed, the real owner signs in."""
    (victim,) = site.take()
    attacker = Browser(broker, "127.0.10.1")
    elsewhere = Browser(broker, "127.0.10.2")
    try:
        for i in range(5):
            status, page, _ = await attacker.try_login(victim, f"guess-{i}")
            assert status == 401 and WRONG in page, i
        status, page, headers = await attacker.try_login(victim, "guess-5")
        assert status == 429 and headers["Retry-After"] == "1"
        assert "Too many attempts" in page
        await asyncio.sleep(1.1)
        status, _, _ = await attacker.try_login(victim, "guess-6")
        assert status == 401  # tried after the delay: answered, and the delay doubles
        status, _, headers = await attacker.try_login(victim, "guess-7")
        assert status == 429 and headers["Retry-After"] == "2"
        status, _, headers = await elsewhere.try_login(victim, "guess-8")
        assert status == 429, "another address must not escape the account's delay"
        await asyncio.sleep(2.1)
        await signs_in(broker, victim, "127.0.10.3")
    finally:
        await attacker.close()
        await elsewhere.close()


async def test_guessing_many_names_from_one_address_is_delayed_per_address(site, broker):
    """The attacker tries a different user name each time from one address, with headers
    claiming other addresses (no trusted proxy is configured): after 5 misses the
    address itself waits (429), although no single name has failed twice. Somebody on
    another address signs in undisturbed meanwhile."""
    (bystander,) = site.take()
    attacker = Browser(broker, "127.0.11.1", headers=SPOOF)
    try:
        for i in range(5):
            status, _, _ = await attacker.try_login(f"ghost{i}-{secrets.token_hex(3)}", "pw")
            assert status == 401, i
        status, _, headers = await attacker.try_login("ghost-last", "pw")
        assert status == 429 and int(headers["Retry-After"]) >= 1
        await signs_in(broker, bystander, "127.0.11.2")
        assert "198.51.100." not in broker.log_text()
    finally:
        await attacker.close()


async def test_an_unknown_name_gets_the_same_answer_in_about_the_same_time(site, broker):
    """Probing for accounts: a wrong password for an existing name, the right password
    with a wrong authentication code, and any password for a name that does not exist
    all get the same status and the same page, in about the same time (the broker
    hashes a dummy for unknown names); after 5 misses both kinds of name are delayed
    alike, so the throttle does not tell them apart either."""
    (known,) = site.take()
    unknown = "nobody-" + secrets.token_hex(4)
    known_t: list[float] = []
    unknown_t: list[float] = []
    pages: set[str] = set()
    for i in range(5):  # each try from its own address: only the name's counter grows
        for name, password, otp, times, ip in (
                (known, "wrong-" + str(i), "123456", known_t, f"127.0.12.{10 + i}"),
                (unknown, "wrong-" + str(i), "123456", unknown_t, f"127.0.12.{30 + i}")):
            if name == known and i == 4:
                password = PASSWORD  # right password, wrong second factor
            b = Browser(broker, ip)
            try:
                await b.page("/login")
                started = time.perf_counter()
                async with b.http.post(b.url + "/login", allow_redirects=False, data={
                        "username": name, "password": password, "otp": otp,
                        "csrf": b.csrf}) as r:
                    page = await r.text()
                    status = r.status
                times.append(time.perf_counter() - started)
            finally:
                await b.close()
            assert status == 401 and WRONG in page, (name, i, status)
            pages.add(same_page(page))
    assert len(pages) == 1, "the failure page differs between the cases"
    k, u = statistics.median(known_t), statistics.median(unknown_t)
    assert 0.5 < k / u < 2.0, f"known {known_t} vs unknown {unknown_t}"
    for name, ip in ((known, "127.0.12.50"), (unknown, "127.0.12.51")):
        b = Browser(broker, ip)
        try:
            status, _, _ = await b.try_login(name, "wrong-again")
            assert status == 429, name
        finally:
            await b.close()


async def test_concurrent_guesses_do_not_slip_past_the_delay(site, broker):
    """The attacker fires 20 password guesses for one account at the same moment instead
    of one after another. The throttle must count guesses still being checked: no more
    than the 5 free misses may be answered with a verdict (401); the rest wait (429).
    Otherwise a burst every few minutes tests dozens of passwords, not a handful."""
    (victim,) = site.take()
    attacker = Browser(broker, "127.0.14.1")
    try:
        await attacker.page("/login")
        token = attacker.csrf

        async def guess(i: int) -> int:
            async with attacker.http.post(attacker.url + "/login", allow_redirects=False, data={
                    "username": victim, "password": f"burst-{i}", "otp": "123456",
                    "csrf": token}) as r:
                return r.status

        statuses = await asyncio.gather(*(guess(i) for i in range(20)))
        judged = statuses.count(401)
        assert set(statuses) <= {401, 429}, statuses
        assert judged <= 5, (f"{judged} of 20 simultaneous guesses were checked against the"
                             f" password (5 allowed): {sorted(statuses)}")
    finally:
        await attacker.close()


async def test_a_used_authentication_code_cannot_be_replayed(site, broker):
    """Someone who saw the owner type password and authentication code signs in with
    both right after the owner: refused, because each code works once; so is the code
    of the step before."""
    (owner,) = site.take()
    code = totp_now(broker, owner)
    first = Browser(broker, "127.0.13.1")
    thief = Browser(broker, "127.0.13.2")
    try:
        status, _, headers = await first.try_login(owner, PASSWORD, code)
        assert status == 303 and headers["Location"] == "/dashboard"
        for replayed in (code, totp_now(broker, owner, -1)):
            status, page, _ = await thief.try_login(owner, PASSWORD, replayed)
            assert status == 401 and WRONG in page
        status, _ = await thief.page("/dashboard")
        assert thief.last_path == "/login"
    finally:
        await first.close()
        await thief.close()


async def test_a_code_from_another_accounts_secret_or_another_time_is_refused(site, broker):
    """With the right password, the authentication code must come from this account's
    own secret and this time: another account's current code, and this account's code
    from two steps before or after now, and its current code in Arabic-Indic digits, are
    refused. The account's own current code then works (nothing else was wrong)."""
    mine, theirs = site.take(n=2)
    b = Browser(broker, "127.0.15.1")
    try:
        # four misses only: after a fifth, even the right code would have to wait. Each
        # code is made just before it is sent and not near a 30-s step's end: under load
        # a step boundary crossed in flight made this account's +2 code a valid +1 code.
        for make in (lambda: totp_now(broker, theirs), lambda: totp_now(broker, mine, -2),
                     lambda: totp_now(broker, mine, 2),
                     lambda: totp_now(broker, mine).translate(ARABIC_INDIC)):
            if time.time() % 30 > 25:  # too near the next step: wait it out (< 5 s)
                await asyncio.sleep(30.5 - time.time() % 30)
            own, otp = totp_now(broker, mine), make()
            if otp == own:
                continue  # another secret that happens to give the same six digits
            status, page, _ = await b.try_login(mine, PASSWORD, otp)
            assert status == 401 and WRONG in page, otp
        status, _, headers = await b.try_login(mine, PASSWORD, totp_now(broker, mine))
        assert status == 303 and headers["Location"] == "/dashboard"
    finally:
        await b.close()


# --- device cookies -------------------------------------------------------------------------


def device_cookie(b: Browser) -> str:
    return b.cookies.get(DEVICE, "")


async def signed_in_with_device(broker: Broker, name: str, ip: str,
                                offset_steps: int = -1) -> Browser:
    """A browser that has signed ``name`` in once (so it holds their device cookie)."""
    b = Browser(broker, ip)
    status, _, headers = await b.try_login(name, PASSWORD, totp_now(broker, name, offset_steps))
    assert status == 303 and headers["Location"] == "/dashboard", status
    return b


def set_device_cookie(b: Browser, value: str) -> None:
    b.http.cookie_jar.update_cookies({DEVICE: value}, response_url=URL(b.url))


async def test_a_known_device_signs_in_through_a_flood_that_makes_others_busy(site, broker):
    """About 150 wrong sign-ins at a time from hundreds of addresses fill the shared
    password queue: sign-ins from browsers the broker has never seen are answered "the
    broker is busy" (twice, to be sure the queue is full). Meanwhile each of 5
    technicians, in the browser they signed in with before (its device cookie for them),
    signs in at the first try, every time.
    The device cookie is Secure, HttpOnly, SameSite=Strict, long-lived, and never
    reaches the broker's log or the audit log."""
    names = site.take(n=6)
    newcomer, known = names[0], names[1:]
    cookies = []
    for i, name in enumerate(known):
        b = await signed_in_with_device(broker, name, f"127.0.16.{i + 1}")
        cookies.append(device_cookie(b))
        await b.close()
    assert all(cookies), "no device cookie after a sign-in"
    browsers = []  # the same browsers another day: the login is gone, the device cookie kept
    for i, cookie in enumerate(cookies):
        browsers.append(Browser(broker, f"127.0.16.{i + 1}"))
        set_device_cookie(browsers[-1], cookie)
    stop, seen = asyncio.Event(), {}
    flood = asyncio.ensure_future(sign_in_flood(broker, stop, seen))
    try:
        busy = 0
        for i in range(40):  # the flood takes a moment to fill the queue
            stranger = Browser(broker, f"127.0.17.{i + 1}")  # no device cookie
            try:
                async with asyncio.timeout(3 * T):
                    status, page, _ = await stranger.try_login(f"x-{secrets.token_hex(4)}", "?")
            finally:
                await stranger.close()
            if status == 429 and "busy" in page:
                busy += 1
                if busy == 2:
                    break
            await asyncio.sleep(0.2)
        assert busy == 2, f"the flood never made the broker busy: {seen}"
        for name, b in zip(known, browsers, strict=True):
            async with asyncio.timeout(3 * T):  # generous; the bench measures the time
                status, page, headers = await b.try_login(name, PASSWORD,
                                                          totp_now(broker, name, 1))
            assert status == 303 and headers["Location"] == "/dashboard", (name, status,
                                                                          page[-300:])
        assert seen.get("busy", 0) > 0, seen
    finally:
        stop.set()
        await flood
        for b in browsers:
            await b.close()
    set_cookie = None
    b = Browser(broker, "127.0.16.50")
    try:
        await b.page("/login")
        async with b.http.post(b.url + "/login", allow_redirects=False, data={
                "username": newcomer, "password": PASSWORD,
                "otp": totp_now(broker, newcomer), "csrf": b.csrf}) as r:
            assert r.status == 303
            set_cookie = next(v for v in r.headers.getall("Set-Cookie") if v.startswith(DEVICE))
    finally:
        await b.close()
    attributes = [a.strip().lower() for a in set_cookie.split(";")]
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= set(attributes), set_cookie
    max_age = next(int(a.split("=")[1]) for a in attributes if a.startswith("max-age="))
    assert max_age >= 90 * 24 * 3600
    events = sqlite3.connect(broker.data / "tether.db").execute(
        "SELECT detail FROM audit_events").fetchall()
    for value in cookies:
        assert value not in broker.log_text()
        assert not any(value in d for (d,) in events)


async def test_wrong_passwords_lock_the_device_cookie_not_the_account(site, broker):
    """A thief with the owner's device cookie (copied from their browser) guesses: 5
    misses (wrong passwords, or the right password with a wrong authentication code:
    the cookie never stands in for the code) spend the cookie's own budget and leave the
    account alone, so the owner signs in at once from another browser. The cookie is
    then locked: it counts as none, and the thief's next 5 misses count against the
    account like anyone's, after which every try waits (429)."""
    owner, = site.take()
    home = await signed_in_with_device(broker, owner, "127.0.18.1")
    thief = Browser(broker, "127.0.18.2")
    set_device_cookie(thief, device_cookie(home))
    try:
        for i in range(5):
            password = PASSWORD if i == 4 else f"guess-{i}"
            status, page, _ = await thief.try_login(owner, password, "000000")
            assert status == 401 and WRONG in page, i
        other = Browser(broker, "127.0.18.3")  # the owner, in another browser
        try:
            status, _, headers = await other.try_login(owner, PASSWORD, totp_now(broker, owner))
            assert status == 303 and headers["Location"] == "/dashboard", status
        finally:
            await other.close()
        for i in range(5):
            status, page, _ = await thief.try_login(owner, f"more-{i}")
            assert status == 401 and WRONG in page, i
        status, _, headers = await thief.try_login(owner, "more-5")
        assert status == 429 and int(headers["Retry-After"]) >= 1
    finally:
        await home.close()
        await thief.close()


async def test_a_forged_or_another_users_device_cookie_counts_as_none(site, broker):
    """An attacker with an account of their own presents their own device cookie, that
    cookie with the victim's name put in, and made-up ones, while guessing the victim's
    password: none opens a budget of its own. After 5 misses the victim's name waits
    like after any 5 misses (429), also for the victim in another browser."""
    victim, attacker_name = site.take(n=2)
    signed_in = await signed_in_with_device(broker, attacker_name, "127.0.19.1")
    own = device_cookie(signed_in)
    await signed_in.close()
    assert own
    attacker = Browser(broker, "127.0.19.1")
    _, nonce, mac = own.split("~")[0].split(".")
    renamed = ".".join((base64.urlsafe_b64encode(victim.encode()).decode().rstrip("="),
                        nonce, mac))
    fakes = [own, renamed, "x", secrets.token_urlsafe(60), renamed + "~" + own]
    try:
        for i, fake in enumerate(fakes):
            set_device_cookie(attacker, fake)
            status, page, _ = await attacker.try_login(victim, f"guess-{i}")
            assert status == 401 and WRONG in page, fake
        b = Browser(broker, "127.0.19.2")
        try:
            status, _, _ = await b.try_login(victim, PASSWORD, totp_now(broker, victim))
            assert status == 429
        finally:
            await b.close()
    finally:
        await attacker.close()


async def test_a_password_change_revokes_the_device_cookies(site, broker):
    """The owner's password is changed (``tether-broker user passwd``): the browser's
    login ends and its device cookie stops counting, so misses made with it count
    against the account as anyone's do (after 5, the account waits: 429)."""
    owner, = site.take()
    home = await signed_in_with_device(broker, owner, "127.0.24.1")
    assert device_cookie(home)
    try:
        run_cli("user", "passwd", "--password-stdin", "--data", str(broker.data), "--", owner,
                input="new-" + PASSWORD + "\n")
        deadline = time.monotonic() + 2 * T
        while (await home.api("GET", "/api/sessions"))[0] != 401:  # the change is applied
            assert time.monotonic() < deadline, "the password change was not applied"
            await asyncio.sleep(0.1)
        for i in range(5):
            status, page, _ = await home.try_login(owner, f"old-guess-{i}")
            assert status == 401 and WRONG in page, i
        b = Browser(broker, "127.0.24.2")
        try:
            status, _, _ = await b.try_login(owner, "new-" + PASSWORD, totp_now(broker, owner))
            assert status == 429
        finally:
            await b.close()
    finally:
        await home.close()


# --- logins left behind -----------------------------------------------------------------------


async def test_signing_in_again_ends_the_login_it_replaces(site, broker):
    """A browser that still holds a login posts the sign-in form again (a form loaded in
    another tab, or a script): the new login replaces the earlier one, which ends there
    and then, with its live socket, so a copy of its cookie is worth nothing. A login of
    the same user in another browser (a technician may work in two) stays."""
    name, = site.take()
    elsewhere = await signed_in_with_device(broker, name, "127.0.25.1", -1)
    b = await signed_in_with_device(broker, name, "127.0.25.2", 0)
    old = session_cookie(b)
    await b.page("/dashboard")
    live = await b.http.ws_connect(wss(broker, "/ws/live"))
    tab = Browser(broker, "127.0.25.2")  # the sign-in form, as loaded in another tab
    try:
        await tab.page("/login")
        async with b.http.post(b.url + "/login", allow_redirects=False,
                               cookies={"__Host-tether-pre": tab.cookies["__Host-tether-pre"]},
                               data={"username": name, "password": PASSWORD,
                                     "otp": totp_now(broker, name, 1), "csrf": tab.csrf}) as r:
            assert r.status == 303 and r.headers["Location"] == "/dashboard", r.status
        assert session_cookie(b) and session_cookie(b) != old
        msg = await live.receive(timeout=T)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 4401, (msg.type, msg.data)
        copy = Browser(broker, "127.0.25.3")
        try:
            copy.http.cookie_jar.update_cookies({"__Host-tether": old}, response_url=URL(b.url))
            assert (await copy.api("GET", "/api/sessions"))[0] == 401
        finally:
            await copy.close()
        assert (await b.api("GET", "/api/sessions"))[0] == 200
        assert (await elsewhere.api("GET", "/api/sessions"))[0] == 200
    finally:
        await live.close()
        await tab.close()
        await b.close()
        await elsewhere.close()
