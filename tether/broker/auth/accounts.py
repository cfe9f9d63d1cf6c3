"""Console accounts at run time: signing in, throttling, and revocation.

Signing in takes a user name, a password and an authentication (TOTP) code.
Failures are throttled, never locked out: per source address and per user
name, the first few failures in ten minutes are free and each one after that
doubles the wait (:class:`.limits.Backoff`). The checks run before any
password hashing; an unknown name costs the same dummy hash as a known one,
and every failure gets the same answer, so neither timing nor wording tells
whether an account exists. Failures are audited as one summary per (name,
address) and period, not one event per guess.

A browser that signed a user in before presents its device cookie
(:mod:`.devices`): its attempts for that user skip the shared delays and the
shared password queue, which a flood from many addresses can fill, and have a
lane and a failure budget of their own. The password and the code are still
required. Every revocation below also revokes the user's device cookies.

Accounts change from the command line (another process) or the admin page;
:meth:`Accounts.watch` polls the store every ``user_poll`` seconds and, when a
user is disabled, changes role, password or authentication secret, ends their
sign-ins, live consoles and channels (audited ``user.revoked``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag

from ...protocol.errors import AuthError, RateLimited, TetherError
from .. import certs
from ..audit.log import AuditLog
from ..config import Config
from ..limits import Backoff, address_key
from ..store.sqlite import Store
from . import totp
from .devices import Device, Devices
from .logins import Logins
from .passwords import Passwords

log = logging.getLogger("tether.accounts")
WRONG = "Wrong username, password or authentication code"
UNKNOWN = "(unknown user)"
WATERMARK = "users_audited_us"  # meta key: the last account change applied and audited


@dataclass(frozen=True)
class SignedIn:
    row: dict[str, Any]
    #: the browser's device cookie value after this sign-in (a credential: never logged)
    device_cookie: str


class Accounts:
    def __init__(self, config: Config, store: Store, audit: AuditLog,
                 passwords: Passwords, logins: Logins) -> None:
        self.config, self.store, self.audit = config, store, audit
        #: called with (user id, reason) when a user loses their access; each returns
        #: how many sessions it ended (the core) or None (the console sockets)
        self.revocation_listeners: list[Callable[[int, str], Awaitable[int | None]]] = []
        self.passwords, self.logins = passwords, logins
        self.seeds = totp.SeedBox(config.certs)
        self.by_ip = Backoff(config.signin_free_failures, config.signin_window)
        self.by_name = Backoff(config.signin_free_failures, config.signin_window)
        # a known device has a budget of its own, as many failures as the shared path
        self.devices = Devices(certs.device_key(config.certs), config.signin_free_failures,
                               config.signin_window)
        self._failures: Counter[tuple[str, str]] = Counter()
        self._known: dict[int, dict[str, Any]] = {}
        self._since = 0
        self._checking = asyncio.Lock()

    # --- signing in ------------------------------------------------------------

    async def sign_in(self, name: str, password: str, code: str, ip: str,
                      device_cookie: str | None = None) -> SignedIn:
        """The user row when all three factors are right (and the browser's new device
        cookie); else AuthError/RateLimited. A valid device cookie for ``name`` takes
        the known device's path (:mod:`.devices`); anything else the shared one."""
        row, device = None, None
        if device_cookie:  # checked before the attempt reaches the device's lane
            row = await self.store.user_by_name(name)
            if row is not None:
                device = self.devices.find(device_cookie, name, row["device_epoch"])
            if device is not None and self.devices.locked(device):
                device = None  # locked by its failures: it counts as no cookie
        if device is not None and row is not None:
            row, stale = await self._known_device(device, row, password, code, ip)
        else:
            row, stale = await self._shared(name, password, code, ip)
        if stale:  # hashed with older parameters: upgrade it now that we know the password
            try:  # best effort: a busy hashing queue must not undo a correct sign-in
                await self.store.set_password_hash(row["id"],
                                                   await self.passwords.hash(password))
            except RateLimited:
                log.info("password hash upgrade put off: the hashing queue is busy",
                         extra={"user": row["name"]})
        return SignedIn(row, self.devices.issue(row["name"], row["device_epoch"], device_cookie))

    async def _shared(self, name: str, password: str, code: str,
                      ip: str) -> tuple[dict[str, Any], bool]:
        wait = max(self.by_ip.retry_after(address_key(ip)), self.by_name.retry_after(name))
        if wait > 0:
            raise RateLimited(wait)
        # counted as a failure before the (slow) checks, taken back on success: parallel
        # guesses cannot all slip in before the first of them is counted
        self.by_ip.hit(address_key(ip))
        self.by_name.hit(name)
        try:
            row = await self.store.user_by_name(name)
            ok, stale = await self._check(row, password, code, None)
        except BaseException:
            self.by_ip.undo(address_key(ip))
            self.by_name.undo(name)
            raise
        if not ok or row is None:
            # an unknown name is not written down: it is often a password typed one field up
            self._failures[(row["name"] if row else UNKNOWN, ip)] += 1
            raise AuthError(WRONG)
        self.by_ip.undo(address_key(ip))
        self.by_name.undo(name)
        return row, stale

    async def _known_device(self, device: Device, row: dict[str, Any], password: str,
                            code: str, ip: str) -> tuple[dict[str, Any], bool]:
        """Own lane, own failure budget: neither the address's nor the name's delays
        (which a flood may have raised) apply, and failures here do not raise them."""
        self.devices.attempt(device)
        try:
            ok, stale = await self._check(row, password, code, device.nonce)
        except BaseException:
            self.devices.succeeded(device)
            raise
        if not ok:
            self._failures[(row["name"], ip)] += 1
            raise AuthError(WRONG)
        self.devices.succeeded(device)
        return row, stale

    async def _check(self, row: dict[str, Any] | None, password: str, code: str,
                     lane: str | None) -> tuple[bool, bool]:
        """(all factors right, hash needs upgrading); an unknown user costs a hash too."""
        ok, stale = await self.passwords.verify(row["password_hash"] if row else None,
                                                password, lane)
        ok = bool(ok and row and not row["disabled"] and await self._second_factor(row, code))
        return ok, stale

    async def _second_factor(self, row: dict[str, Any], code: str) -> bool:
        if not row["totp_seed"]:
            log.warning("account has no authentication secret", extra={"user": row["name"]})
            return False
        try:
            seed = self.seeds.open(row["name"], bytes(row["totp_seed"]))
        except (InvalidTag, ValueError):
            log.error("authentication secret cannot be decrypted", extra={"user": row["name"]})
            return False
        step = totp.accept(seed, code, row["totp_step"])
        # the store takes the step only if no sign-in used it (or a later one) first
        return step is not None and await self.store.use_totp_step(row["id"], step)

    def clear_delays(self, name: str) -> None:
        self.by_name.clear(name)

    async def flush_failures(self) -> None:
        """One ``user.signin_failed`` event per (name, address) and period."""
        summary, self._failures = self._failures, Counter()
        for (name, ip), count in summary.items():
            await self.audit.append("user.signin_failed", actor=name[:64] or "?", ip=ip,
                                    count=count, window_s=self.config.signin_window)

    # --- changes and revocation -----------------------------------------------

    async def start(self) -> None:
        """Apply (and audit) what changed while the broker was not running."""
        self._since = int(await self.store.get_meta(WATERMARK) or 0)
        await self.check(starting=True)
        self._known = {u["id"]: u for u in await self.store.users_changed_since(-1)}

    async def watch(self) -> None:
        """Forever: notice account changes (any process) within ``user_poll`` seconds."""
        while True:
            await asyncio.sleep(self.config.user_poll)
            try:
                await self.check()
            except TetherError:
                log.error("could not audit an account change; retrying")
            except Exception:
                log.exception("account watcher error")

    async def check(self, *, starting: bool = False) -> None:
        """Apply every account change since the last look: revoke first (it must
        happen even if the log cannot be written), then audit, then move on. The
        watermark is stored, so changes made while the broker was stopped are
        applied and audited at the next start."""
        async with self._checking:  # the admin page and the watcher may both call this
            for user in await self.store.users_changed_since(self._since):
                before = self._known.get(user["id"])
                if user["disabled"]:
                    await self.revoke(user, "the account was disabled")
                elif starting and user["changed_us"] != user["created_us"]:
                    await self.revoke(user, "the account changed while the broker was stopped")
                elif before is not None and not before["disabled"]:  # else: nothing live
                    await self.revoke(user, (
                        f"the account's role changed to {user['role']}"
                        if before["role"] != user["role"]
                        else "the account's password or authentication secret changed"))
                await self.audit.append("user.changed", actor="broker", target=user["name"],
                                        role=user["role"], disabled=bool(user["disabled"]))
                self._since = max(self._since, user["changed_us"])
                self._known[user["id"]] = user
                await self.store.set_meta(WATERMARK, str(self._since))

    async def revoke(self, user: dict[str, Any], reason: str) -> None:
        """Revocation is an event: the core and the web layer listen and act at once.
        The user's sign-ins end and every device cookie of theirs stops counting."""
        await self.store.delete_logins_of(user["id"])
        await self.store.bump_device_epoch(user["id"])
        ended = 0
        for listener in self.revocation_listeners:
            ended += await listener(user["id"], reason) or 0
        await self.audit.append("user.revoked", actor="broker", target=user["name"],
                                reason=reason, sessions_ended=ended)
