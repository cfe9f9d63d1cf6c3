"""Device cookies: a browser that signed a user in before gets past a sign-in flood.

OWASP's "Slow Down Online Guessing Attacks with Device Cookies". After a
successful sign-in the browser gets a long-lived cookie bound to that user
name. When it comes back, its attempts *for that user* skip the shared
throttles and the shared password queue, which a flood from many addresses
can fill, and have their own:

* a lane of their own in the password pool (:class:`.passwords.Passwords`),
  served before the shared queue, with at most ``per_device`` checks waiting;
* a failure budget of their own: after ``budget`` failures in ``window``
  seconds the *cookie* is locked for good: it counts as no cookie (the shared
  path, with its delays, as for anyone). The account is not locked: its owner
  still signs in through the shared path, and every sign-in gives the browser a
  fresh cookie. A thief of the cookie gains ``budget`` guesses, never a way
  around the shared delays.

A cookie never signs anyone in: the password and the authentication code are
checked as always. Its MAC (HMAC-SHA256 under ``certs/device.key``) covers the
user name, a random nonce and the account's *device epoch*, which every
revocation bumps (password, role or authentication secret changed, account
disabled: :meth:`.accounts.Accounts.revoke`), so that all the account's
cookies die with it. A forged cookie, one for another user or a revoked one is
no cookie at all. The value is a credential: it is never logged.

One browser may keep cookies for a few users (a shared workstation): the
value holds up to ``PER_BROWSER`` entries ``name.nonce.mac``, newest first.
Locks are kept in memory; a restart lifts them (the cookie still needs the
password and the code).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from ..limits import SlidingWindow

COOKIE = "__Host-tether-device"
#: a device cookie lasts this long after its latest sign-in (renewed at each one)
MAX_AGE = 180 * 24 * 3600
#: entries (users) one browser's cookie keeps, newest first
PER_BROWSER = 4
MAX_COOKIE = 2048
_LABEL = b"tether.device.v1"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Device:
    """A valid device cookie entry: its nonce names the device's lane and budget."""

    name: str
    nonce: str


class Devices:
    def __init__(self, key: bytes, budget: int, window: float) -> None:
        self._key = key
        self.failures = SlidingWindow(budget, window)
        self._locked: set[str] = set()  # nonces whose budget ran out (MAC-checked ones)

    def _mac(self, name: str, nonce: str, epoch: int) -> str:
        msg = b"\0".join((_LABEL, name.encode(), nonce.encode(), str(epoch).encode()))
        return _b64(hmac.new(self._key, msg, hashlib.sha256).digest())

    @staticmethod
    def _entries(cookie: str | None) -> list[tuple[str, str, str]]:
        """(name, nonce, mac) of each well-formed entry; anything else is skipped."""
        if not cookie or len(cookie) > MAX_COOKIE:
            return []
        out = []
        for entry in cookie.split("~")[:PER_BROWSER]:
            parts = entry.split(".")
            if len(parts) != 3:
                continue
            try:
                name = _unb64(parts[0]).decode()
            except (binascii.Error, ValueError):
                continue
            out.append((name, parts[1], parts[2]))
        return out

    def find(self, cookie: str | None, name: str, epoch: int) -> Device | None:
        """The device entry of ``cookie`` for ``name``, if its MAC holds for the
        account's current epoch; None for a missing, forged or revoked one."""
        for entry_name, nonce, mac in self._entries(cookie):
            if entry_name == name and hmac.compare_digest(
                    mac.encode(), self._mac(name, nonce, epoch).encode()):
                return Device(name, nonce)
        return None

    def issue(self, name: str, epoch: int, cookie: str | None) -> str:
        """The browser's new cookie value after ``name`` signed in: a fresh entry for
        ``name`` first, the browser's entries for other users after it."""
        nonce = secrets.token_urlsafe(16)  # 128 bits
        fresh = f"{_b64(name.encode())}.{nonce}.{self._mac(name, nonce, epoch)}"
        others = [f"{_b64(n.encode())}.{nc}.{m}" for n, nc, m in self._entries(cookie)
                  if n != name]
        value = "~".join([fresh, *others][:PER_BROWSER])
        while len(value) > MAX_COOKIE and "~" in value:  # long names: keep fewer entries
            value = value.rsplit("~", 1)[0]
        return value

    # --- the cookie's own failure budget -------------------------------------------

    def locked(self, device: Device) -> bool:
        """Whether this cookie's budget ran out (then it is locked until a restart)."""
        if device.nonce not in self._locked and self.failures.retry_after(device.nonce) > 0:
            self._locked.add(device.nonce)
        return device.nonce in self._locked

    def attempt(self, device: Device) -> None:
        """Counted as a failure before the (slow) checks; :meth:`succeeded` takes it
        back, so parallel attempts cannot all slip in before the first is counted."""
        self.failures.hit(device.nonce)

    def succeeded(self, device: Device) -> None:
        self.failures.undo(device.nonce)
