"""Attacks on signing in: password guessing, user-name probing, TOTP replay and theft.

The broker's sign-in throttle (no flags: its defaults) lets 5 failures per account and
per source address go free in 10 minutes, then doubles a delay after each further
failure (1 s, 2 s, 4 s, ...). There is no lock-out: the owner signs in once the delay
has passed. Every failure gets the same answer, whether the name exists or not.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import statistics
import time

import pytest

from tests.helpers import Broker
from tests.security.conftest import Site
from tests.security.tools import PASSWORD, Browser, totp_now

WRONG = "Wrong username, password or authentication code"
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
SPOOF = {"X-Forwarded-For": "198.51.100.77", "X-Real-IP": "198.51.100.78",
         "Forwarded": "for=198.51.100.79", "True-Client-IP": "198.51.100.80"}


@pytest.fixture(scope="module")
def site(start_broker) -> Site:
    return start_broker(technician=9)


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
        own = totp_now(broker, mine)
        # four misses only: after a fifth, even the right code would have to wait
        for otp in (totp_now(broker, theirs), totp_now(broker, mine, -2),
                    totp_now(broker, mine, 2), own.translate(ARABIC_INDIC)):
            if otp == own:
                continue  # another secret that happens to give the same six digits
            status, page, _ = await b.try_login(mine, PASSWORD, otp)
            assert status == 401 and WRONG in page, otp
        status, _, headers = await b.try_login(mine, PASSWORD, totp_now(broker, mine))
        assert status == 303 and headers["Location"] == "/dashboard"
    finally:
        await b.close()
