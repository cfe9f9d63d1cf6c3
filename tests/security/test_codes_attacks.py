"""Attacks on session codes: guessing, replaying, racing, and digits that only look right.

One broker for the module, with small limits: 3 failed codes per technician and 5 per
source address per minute, codes that live 2.5 s. The customer is a hand-spoken
control connection (:class:`FakeAgent`) that gets a real code from the broker. Each test
uses its own accounts and its own 127.x.y.z source addresses, so no test's counters
touch another's.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from yarl import URL

from tests.helpers import Broker
from tests.security.conftest import Site
from tests.security.tools import Browser, FakeAgent, browser
from tether.protocol.codes import damm

TOO_MANY = "Too many attempts — try again in 1 min"  # the address's limit
MY_LIMIT = "Too many attempts — try again in 1 min, or ask an admin"  # the technician's own


@pytest.fixture(scope="module")
def site(start_broker) -> Site:
    return start_broker("--redeem-failures", "3", "--redeem-failures-per-ip", "5",
                        "--fail-window", "60", "--code-ttl", "2.5", "--max-codes-per-ip", "100",
                        "--new-codes-per-ip", "100",
                        "--consent-wait", "8", "--pair-timeout", "5", technician=18, admin=1)


@pytest.fixture
def broker(site: Site) -> Broker:
    return site.broker


@pytest.fixture
def techs(site: Site) -> Callable[[Broker, int], list[str]]:
    return lambda _broker, n: site.take("technician", n)


def wrong(code: str, k: int) -> str:
    """A well-formed code (right check digit) that differs from ``code``: a real guess,
    not a typo the check digit would catch for free."""
    body = code[:8]
    body = body[:6] + f"{(int(body[6:8]) + k) % 100:02d}"
    return body + str(damm(body))


def spaced(code: str) -> str:
    return f"{code[:3]} {code[3:6]} {code[6:]}"


async def close_all(*things: Browser | FakeAgent) -> None:
    for thing in things:
        await thing.close()


async def test_brute_force_from_one_address_is_stopped_and_locks_out_nobody_else(broker, techs):
    """The attacker, signed in as a technician, guesses well-formed codes from one
    address. After 3 misses every further try -- even the right code -- is a 429 that
    says when to try again, so guessing stops there; the real code is not used up, and
    another technician elsewhere redeems it at once."""
    attacker_name, owner_name = techs(broker, 2)
    agent = await FakeAgent(broker).connect()
    attacker = await browser(broker, attacker_name, "127.0.1.1")
    owner = await browser(broker, owner_name, "127.0.1.2")
    try:
        code = await agent.code()
        for k in range(1, 4):
            status, _, page = await attacker.redeem_raw(wrong(code, k))
            assert status == 400 and "That code is not valid" in page, (k, status)
        status, _, page = await attacker.redeem_raw(wrong(code, 4))
        assert status == 429 and MY_LIMIT in page
        status, _, page = await attacker.redeem_raw(code)
        assert status == 429 and MY_LIMIT in page, "the right code must not get through either"
        status, location, _ = await owner.redeem_raw(spaced(code))
        assert status == 303 and location.startswith("/sessions/s_")
        assert (await agent.next("claimed"))["technician"] == f"Dr {owner_name}"
    finally:
        await close_all(agent, attacker, owner)


async def test_an_admin_lifts_a_technicians_code_entry_limit(broker, techs, site):
    """The limit is a day long by default (it is what keeps guessing below 10^-6 a day),
    so a technician who misread three codes asks an admin, who sees why on the accounts
    page and clears it (audited); then the right code works at once."""
    (name,) = techs(broker, 1)
    agent = await FakeAgent(broker).connect()
    tech = await browser(broker, name, "127.0.10.1")
    admin = await browser(broker, site.take("admin")[0], "127.0.10.2")
    try:
        code = await agent.code()
        for k in range(1, 4):
            assert (await tech.redeem_raw(wrong(code, k)))[0] == 400
        status, _, page = await tech.redeem_raw(code)
        assert status == 429 and "ask an admin to clear your code-entry limit" in page
        _, page = await admin.page("/admin")
        row = re.search(f'<tr data-user="{name}">.*?</tr>', page, re.S)
        assert row and "code entry blocked" in row.group(0)
        assert "Clear code-entry limit" in row.group(0)
        status, page = await admin.post(f"/admin/users/{name}/clear-delays",
                                        {"csrf": admin.csrf})
        assert status == 200 and f"code-entry limit cleared for {name}" in page
        status, location, _ = await tech.redeem_raw(code)
        assert status == 303 and location.startswith("/sessions/s_")
    finally:
        await close_all(agent, tech, admin)


async def test_the_per_address_limit_counts_every_account_on_that_address(broker, techs):
    """Two attacker accounts guess from the same address: 3 misses for the first (its own
    limit) and 2 for the second reach the address's limit of 5, so the second account --
    still under its own limit -- is refused with 429 too."""
    first_name, second_name = techs(broker, 2)
    agent = await FakeAgent(broker).connect()
    first = await browser(broker, first_name, "127.0.2.1")
    second = await browser(broker, second_name, "127.0.2.1")
    try:
        code = await agent.code()
        for k in range(1, 4):
            assert (await first.redeem_raw(wrong(code, k)))[0] == 400
        for k in range(4, 6):
            assert (await second.redeem_raw(wrong(code, k)))[0] == 400
        status, _, page = await second.redeem_raw(wrong(code, 6))
        assert status == 429 and TOO_MANY in page
    finally:
        await close_all(agent, first, second)


async def test_forwarded_for_headers_do_not_make_a_new_address(broker, techs):
    """Guesses that claim to come from many addresses (X-Forwarded-For, X-Real-IP,
    Forwarded -- no trusted proxy is configured) still count against the real peer
    address: the address limit of 5 bites exactly as without the headers, and no spoofed
    address reaches the broker's log."""
    names = techs(broker, 2)
    agent = await FakeAgent(broker).connect()
    guessers = [await browser(broker, name, "127.0.3.1") for name in names]
    spoofed = [f"198.51.100.{i}" for i in range(1, 8)]
    try:
        code = await agent.code()
        statuses = []
        for i, fake in enumerate(spoofed[:6]):
            headers = {"X-Forwarded-For": f"{fake}, 203.0.113.9", "X-Real-IP": fake,
                       "Forwarded": f"for={fake};proto=https", "X-Client-IP": fake}
            who = guessers[0] if i < 3 else guessers[1]
            statuses.append((await who.redeem_raw(wrong(code, i + 1), headers))[0])
        assert statuses == [400, 400, 400, 400, 400, 429]
        log = broker.log_text()
        assert not any(fake in log for fake in spoofed)
        assert '"peer": "127.0.3.1"' in log
    finally:
        await close_all(agent, *guessers)


async def test_simultaneous_guesses_do_not_slip_past_the_limit(broker, techs):
    """The attacker sends 12 guesses at the same moment instead of one after another:
    only 3 are checked against the live codes ("not valid"), the other 9 are refused
    with 429 -- the limit counts guesses that are still in flight."""
    (name,) = techs(broker, 1)
    agent = await FakeAgent(broker).connect()
    attacker = await browser(broker, name, "127.0.9.1")
    try:
        code = await agent.code()
        await attacker.page("/dashboard")
        statuses = await asyncio.gather(*(attacker.redeem_raw(wrong(code, k))
                                          for k in range(1, 13)))
        assert sorted(s for s, _, _ in statuses) == [400] * 3 + [429] * 9
    finally:
        await close_all(agent, attacker)


async def test_many_source_addresses_do_not_reset_the_technicians_limit(broker, techs):
    """One attacker account guesses from a new source address for every try (the same
    login cookie, four real addresses): the per-technician limit still stops it after 3
    misses."""
    (name,) = techs(broker, 1)
    agent = await FakeAgent(broker).connect()
    first = await browser(broker, name, "127.0.4.1")
    others = [Browser(broker, f"127.0.4.{i}") for i in range(2, 5)]
    try:
        code = await agent.code()
        for b in others:  # the same login, sent from elsewhere
            b.http.cookie_jar.update_cookies(first.http.cookie_jar.filter_cookies(URL(first.url)),
                                             URL(first.url))
            b.csrf = first.csrf
        tries = [first, *others]
        statuses = [(await b.redeem_raw(wrong(code, k)))[0] for k, b in enumerate(tries, 1)]
        assert statuses == [400, 400, 400, 429]
    finally:
        await close_all(agent, first, *others)


async def test_a_replayed_code_is_refused(broker, techs):
    """A code that was redeemed is gone: a second technician who heard it, and the first
    one again after the session ended, both get "not valid" and no session."""
    owner_name, eavesdropper_name = techs(broker, 2)
    agent = await FakeAgent(broker).connect()
    owner = await browser(broker, owner_name, "127.0.5.1")
    eavesdropper = await browser(broker, eavesdropper_name, "127.0.5.2")
    try:
        code = await agent.code()
        status, location, _ = await owner.redeem_raw(code)
        assert status == 303
        sid = location.rsplit("/", 1)[1]
        status, _, page = await eavesdropper.redeem_raw(code)
        assert status == 400 and "That code is not valid" in page
        status, _ = await owner.end(sid)
        assert status == 200
        status, _, page = await owner.redeem_raw(spaced(code))
        assert status == 400 and "That code is not valid" in page
        await agent.closed()  # the session's end closes the client's connection
        assert [m["type"] for m in agent.seen].count("claimed") == 1
    finally:
        await close_all(agent, owner, eavesdropper)


async def test_an_expired_code_is_refused(broker, techs):
    """A code read out more than its lifetime ago is refused; the client was given a
    new code meanwhile, and that one works."""
    (name,) = techs(broker, 1)
    agent = await FakeAgent(broker).connect()
    tech = await browser(broker, name, "127.0.6.1")
    try:
        old = await agent.code()
        new = await agent.code()  # sent when the old one expired
        assert old != new
        status, _, page = await tech.redeem_raw(old)
        assert status == 400 and "That code is not valid" in page
        status, location, _ = await tech.redeem_raw(new)
        assert status == 303 and location.startswith("/sessions/")
    finally:
        await close_all(agent, tech)


async def test_two_technicians_redeeming_one_code_at_once_exactly_one_wins(broker, techs):
    """Four technicians (four addresses) send the same code at the same moment, three
    rounds over: each time exactly one gets the session, the others get "not valid",
    and the client is claimed once, by the winner."""
    names = techs(broker, 4)
    racers = [await browser(broker, name, f"127.0.7.{i}") for i, name in enumerate(names, 1)]
    agents: list[FakeAgent] = []
    try:
        for _ in range(3):
            agent = await FakeAgent(broker).connect()
            agents.append(agent)
            code = await agent.code()
            go = asyncio.Event()

            async def race(b: Browser, code: str = code, go: asyncio.Event = go
                           ) -> tuple[int, str, str]:
                await go.wait()
                return await b.redeem_raw(code)

            tasks = [asyncio.create_task(race(b)) for b in racers]
            await asyncio.sleep(0.05)
            go.set()
            results = await asyncio.gather(*tasks)
            winners = [i for i, (status, _, _) in enumerate(results) if status == 303]
            assert len(winners) == 1, [r[0] for r in results]
            assert sorted(r[0] for r in results) == [303, 400, 400, 400]
            claimed = await agent.next("claimed")
            assert claimed["technician"] == f"Dr {names[winners[0]]}"
            sid = results[winners[0]][1].rsplit("/", 1)[1]
            assert claimed["session"] == sid
    finally:
        await close_all(*agents, *racers)


# Each maps the ten ASCII digits to look-alikes that str.isdigit() or int() accept.
LOOKALIKES = {
    "arabic-indic": "٠١٢٣٤٥٦٧٨٩",
    "extended arabic-indic": "۰۱۲۳۴۵۶۷۸۹",
    "devanagari": "०१२३४५६७८९",
    "fullwidth": "０１２３４５６７８９",
    "mathematical bold": "".join(chr(0x1D7CE + i) for i in range(10)),
    "superscript": "⁰¹²³⁴⁵⁶⁷⁸⁹",
}


async def test_unicode_digits_are_not_a_code_and_cost_no_attempt(broker, techs):
    """The live code, typed with digits from other scripts (Arabic-Indic, Devanagari,
    fullwidth, mathematical, superscript), with one look-alike hidden among ASCII digits,
    or with invisible characters in between, is "not valid" -- it is not normalised into
    the real code -- and, like a typo, costs no attempt: after more such tries than the
    limit allows, the ASCII code still works."""
    (name,) = techs(broker, 1)
    agent = await FakeAgent(broker).connect()
    tech = await browser(broker, name, "127.0.8.1")
    try:
        code = await agent.code()
        variants = [code.translate(str.maketrans("0123456789", digits))
                    for digits in LOOKALIKES.values()]
        variants += [
            code[:4] + LOOKALIKES["fullwidth"][int(code[4])] + code[5:],
            code[:3] + "\u200b" + code[3:],  # zero-width space
            code[:3] + "\u00a0" + code[3:],  # no-break space
            code[:3] + "\x00" + code[3:],
            code + "\u0301",  # a combining accent on the last digit
        ]
        for variant in variants:
            status, location, page = await tech.redeem_raw(variant)
            assert status == 400 and not location, repr(variant)
            assert re.search(r"That code is not valid|typo", page), repr(variant)
        status, location, _ = await tech.redeem_raw(code)
        assert status == 303 and location.startswith("/sessions/")
    finally:
        await close_all(agent, tech)
