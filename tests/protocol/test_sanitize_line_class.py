"""``sanitize.CONTROL_LINE_CLASS``: the one spelling of the characters a line loses.

The console's JavaScript removes what this class matches (``vocabulary`` exports it), so it
must match exactly the single characters :func:`clean_text` removes, and be a plain
character class that means the same thing to a JavaScript ``RegExp``.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.protocol.sanitize import CONTROL_LINE_CLASS, clean_text

CLASS = re.compile(CONTROL_LINE_CLASS)
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_it_matches_every_c0_c1_del_line_separator_and_bidi_character() -> None:
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *map(ord, BIDI)]:
        assert CLASS.fullmatch(chr(code)), f"U+{code:04X}"


def test_it_leaves_ordinary_text_alone() -> None:
    for ch in " ~AzÀé日🙂\u00a0\u200b\u2060\ufeff":
        assert not CLASS.fullmatch(ch), repr(ch)


def test_it_matches_exactly_the_characters_clean_text_removes_in_the_bmp() -> None:
    for code in range(0x10000):
        if 0xD800 <= code <= 0xDFFF:
            continue  # lone surrogates are not text
        ch = chr(code)
        # at the end of the text: an ESC there is not the start of a sequence eating "b"
        removed = clean_text(f"a{ch}") == "a"
        assert removed == bool(CLASS.fullmatch(ch)), f"U+{code:04X}"


@settings(max_examples=200)
@given(st.characters(min_codepoint=0x10000))
def test_no_astral_character_is_matched(ch: str) -> None:
    assert not CLASS.fullmatch(ch)
    assert clean_text(ch) == ch


def test_it_is_one_plain_character_class_with_literal_characters() -> None:
    # a JS RegExp built from the exported string must read it the same way: no escapes,
    # no Python-only syntax, nothing outside the brackets, no astral characters (which a
    # RegExp without the "u" flag would split into surrogates)
    assert CONTROL_LINE_CLASS.startswith("[") and CONTROL_LINE_CLASS.endswith("]")
    inner = CONTROL_LINE_CLASS[1:-1]
    assert "[" not in inner and "]" not in inner and "\\" not in inner
    assert not inner.startswith("^")
    assert all(ord(ch) <= 0xFFFF for ch in inner)
