"""Properties of session codes (protocol/codes.py) not covered by test_codes.

* any valid code, with spaces, dashes and tabs put anywhere, normalises to itself as long
  as what was typed is at most 64 characters; over 64 it is refused as ``BadCode``;
* any other character anywhere (a letter, a Unicode digit or space, a control) is refused;
* ``format_code`` always gives ``ddd ddd ddd`` and is undone by ``normalize``;
* any two different valid codes differ in at least two digits (the Damm check digit
  catches every single-digit typo), checked on random pairs.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.protocol.codes import damm, format_code, normalize
from tether.protocol.errors import BadCode

DIGITS = "0123456789"
CODES = st.text(alphabet=DIGITS, min_size=8, max_size=8).map(lambda b: b + str(damm(b)))
SEPARATORS = st.lists(st.text(alphabet=" -\t", max_size=8), min_size=10, max_size=10)


def spread(code: str, gaps: list[str]) -> str:
    """The code's digits with ``gaps[i]`` before digit i (and gaps[9] after the last)."""
    return "".join(g + d for g, d in zip(gaps, code, strict=False)) + gaps[9]


@given(CODES, SEPARATORS)
def test_separators_anywhere_are_ignored_up_to_64_characters(code: str, gaps: list[str]) -> None:
    typed = spread(code, gaps)
    if len(typed) <= 64:
        assert normalize(typed) == code
    else:
        with pytest.raises(BadCode):
            normalize(typed)


@given(CODES, st.integers(min_value=0, max_value=9), st.integers(min_value=-2, max_value=2))
def test_the_64_character_limit_is_exact(code: str, where: int, delta: int) -> None:
    pad = " " * (64 + delta - 9)
    typed = code[:where] + pad + code[where:]
    assert len(typed) == 64 + delta
    if delta <= 0:
        assert normalize(typed) == code
    else:
        with pytest.raises(BadCode):
            normalize(typed)


OTHER = st.characters(codec=None).filter(lambda ch: ch not in DIGITS + " -\t")


@given(CODES, SEPARATORS, OTHER, st.integers(min_value=0, max_value=20))
def test_any_other_character_is_refused(code: str, gaps: list[str], ch: str, at: int) -> None:
    typed = spread(code, gaps)
    if len(typed) > 63:
        typed = code
    typed = typed[:at] + ch + typed[at:]
    with pytest.raises(BadCode):
        normalize(typed)


@given(CODES)
def test_format_is_three_groups_and_normalize_undoes_it(code: str) -> None:
    shown = format_code(code)
    assert re.fullmatch(r"\d{3} \d{3} \d{3}", shown, re.ASCII)
    assert normalize(shown) == code
    assert format_code(normalize(shown)) == shown


@given(CODES, CODES)
def test_two_valid_codes_differ_in_at_least_two_digits(a: str, b: str) -> None:
    if a != b:
        assert sum(x != y for x, y in zip(a, b, strict=True)) >= 2
