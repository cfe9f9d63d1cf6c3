"""Device cookies (broker/auth/devices.py): bound to a user, a key and an epoch.

* A cookie is valid only for the user it was issued to, under the broker's key,
  at the account's current device epoch (every revocation bumps it).
* A forged, altered, truncated or oversized cookie is no cookie at all.
* One browser keeps entries for a few users, newest first.
* Its failure budget is its own: ``budget`` failures lock that cookie only.
"""

from __future__ import annotations

import secrets

from tether.broker.auth.devices import MAX_COOKIE, PER_BROWSER, Devices

KEY = secrets.token_bytes(32)


def devices(key: bytes = KEY) -> Devices:
    return Devices(key, budget=3, window=600)


def test_a_cookie_is_valid_for_its_user_key_and_epoch_only() -> None:
    d = devices()
    cookie = d.issue("alice", 0, None)
    found = d.find(cookie, "alice", 0)
    assert found is not None and found.name == "alice"
    assert d.find(cookie, "bob", 0) is None  # another user's name
    assert d.find(cookie, "alice", 1) is None  # revoked: the epoch moved on
    assert devices(secrets.token_bytes(32)).find(cookie, "alice", 0) is None  # other key
    assert "alice" not in cookie  # the name is encoded, the value is opaque


def test_forged_and_malformed_cookies_are_no_cookie() -> None:
    d = devices()
    cookie = d.issue("alice", 0, None)
    name, nonce, mac = cookie.split(".")
    other = d.issue("bob", 0, None)
    bob_name = other.split(".")[0]
    for bad in (None, "", "x", cookie + "x", f"{name}.{nonce}.{mac[:-1]}",
                f"{name}.{secrets.token_urlsafe(16)}.{mac}",
                f"{bob_name}.{nonce}.{mac}",  # alice's MAC under bob's name
                f"{name}.{nonce}.{mac}.extra", f"!!!.{nonce}.{mac}",
                "~".join([other] * (PER_BROWSER + 1)) + "~" + cookie,  # beyond the entries kept
                cookie + "~" + "a" * MAX_COOKIE):
        assert d.find(bad, "alice", 0) is None, bad


def test_a_browser_keeps_a_few_users_newest_first() -> None:
    d = devices()
    cookie = None
    names = [f"user{i}" for i in range(PER_BROWSER + 2)]
    for name in names:
        cookie = d.issue(name, 0, cookie)
    kept = [n for n in names if d.find(cookie, n, 0)]
    assert kept == names[-PER_BROWSER:]
    renewed = d.issue(names[-1], 0, cookie)  # signing in again replaces that user's entry
    assert renewed.count("~") == PER_BROWSER - 1
    assert d.find(renewed, names[-1], 0) != d.find(cookie, names[-1], 0)


def test_failures_lock_the_cookie_not_the_user() -> None:
    d = devices()
    mine = d.find(d.issue("alice", 0, None), "alice", 0)
    other = d.find(d.issue("alice", 0, None), "alice", 0)  # alice's second browser
    assert mine is not None and other is not None
    d.attempt(mine)
    d.succeeded(mine)  # a success takes its attempt back
    for _ in range(3):
        assert not d.locked(mine)
        d.attempt(mine)
    assert d.locked(mine)
    assert not d.locked(other)
    d.failures.clear(mine.nonce)  # the window passed: a stolen cookie stays locked
    assert d.locked(mine)
