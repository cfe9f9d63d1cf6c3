"""Session codes: 8 random digits and a Damm check digit, shown ``123 456 789``.

The check digit catches every single-digit error and every adjacent
transposition, so a mistyped code is rejected before it costs the technician
one of their limited attempts.
"""

from __future__ import annotations

import secrets

from .errors import BadCode

_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)

CODE_DIGITS = 9
_ASCII_DIGITS = frozenset("0123456789")


def damm(digits: str) -> int:
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][ord(ch) - 48]
    return interim


def generate() -> str:
    """Return a new code as 9 ASCII digits (no separators)."""
    body = "".join(secrets.choice("0123456789") for _ in range(CODE_DIGITS - 1))
    return body + str(damm(body))


def format_code(code: str) -> str:
    return f"{code[0:3]} {code[3:6]} {code[6:9]}"


def normalize(text: str) -> str:
    """Parse what a person typed: spaces and dashes ignored, ASCII digits only.

    Raises :class:`BadCode` for anything else, including Unicode digits such
    as ``'١'`` that ``str.isdigit`` would accept, and for a wrong check digit.
    """
    if len(text) > 64:
        raise BadCode()
    cleaned = "".join(ch for ch in text if ch not in " -\t")
    if len(cleaned) != CODE_DIGITS or not set(cleaned) <= _ASCII_DIGITS:
        raise BadCode()
    if damm(cleaned) != 0:
        raise BadCode("That code has a typo — check the digits and try again")
    return cleaned
