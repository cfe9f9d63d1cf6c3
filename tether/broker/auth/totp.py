"""Second factor: TOTP (RFC 6238, via pyotp), seeds encrypted at rest.

* Each account gets a random 160-bit seed at creation; ``user add`` prints it
  and its ``otpauth://`` URI once, for the person's authenticator app.
* Seeds are stored encrypted (AES-256-GCM, the user name as associated data so
  a seed cannot be moved to another account) under a key kept in
  ``certs/totp.key``: a copy of ``tether.db`` alone reveals none of them.
* A code is accepted for the current 30-second step or one step either side
  (clock drift), and only for a step later than the last one accepted for
  that account: each value works once.
"""

from __future__ import annotations

import hmac
import secrets
import time
from pathlib import Path

import pyotp
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..certs import TOTP_KEY

STEP = 30
ISSUER = "Tether"


class SeedBox:
    """Encrypts and decrypts TOTP seeds with the key under ``certs/``."""

    def __init__(self, certs: Path) -> None:
        self._aead = AESGCM((certs / TOTP_KEY).read_bytes())

    def seal(self, name: str, seed: str) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + self._aead.encrypt(nonce, seed.encode(), name.encode())

    def open(self, name: str, sealed: bytes) -> str:
        return self._aead.decrypt(sealed[:12], sealed[12:], name.encode()).decode()


def new_seed() -> str:
    return pyotp.random_base32(32)  # 160 bits


def uri(name: str, seed: str) -> str:
    return pyotp.TOTP(seed).provisioning_uri(name=name, issuer_name=ISSUER)


def accept(seed: str, code: str, last_step: int, now: float | None = None) -> int | None:
    """The time step ``code`` is valid for, if it is valid and newer than ``last_step``."""
    code = code.strip().replace(" ", "")
    if len(code) != 6 or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(seed)
    current = int((time.time() if now is None else now) // STEP)
    found = None
    for step in (current - 1, current, current + 1):  # compare all: no early exit
        if hmac.compare_digest(totp.at(step * STEP), code) and step > last_step:
            found = step
    return found
