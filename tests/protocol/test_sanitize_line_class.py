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
from tether.protocol.vocabulary import strings_js

CLASS = re.compile(CONTROL_LINE_CLASS)
BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


def test_it_matches_every_c0_c1_del_line_separator_and_bidi_character() -> None:
    for code in [*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, *map(ord, BIDI)]:
        assert CLASS.fullmatch(chr(code)), f"U+{code:04X}"


def test_it_leaves_ordinary_text_alone() -> None:
    for ch in " ~AzÀé日🙂\u00a0\u200c\u200d\ufe0e\ufe0f\u180b\U000e0100":
        assert not CLASS.fullmatch(ch), repr(ch)


def test_it_matches_the_invisible_characters_that_disguise_a_name() -> None:
    for code in [0xAD, 0x34F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x200B,
                 *range(0x2060, 0x2066), *range(0x206A, 0x2070), 0x3164, 0xFEFF, 0xFFA0,
                 *range(0xFFF9, 0xFFFC), 0x1BCA0, 0x1D173, *range(0xE0000, 0xE0080)]:
        assert CLASS.fullmatch(chr(code)), f"U+{code:04X}"
    assert clean_text("adm\u200bin") == "admin"
    assert clean_text("adm\u2060i\ufeffn\U000e0041") == "admin"
    # Persian and emoji keep their joiners and variation selectors
    for kept in ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
                 "\U0001f469\u200d\U0001f4bb", "\u2764\ufe0f"):
        assert clean_text(kept) == kept


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
    # no Python-only syntax, nothing outside the brackets; astral characters (tags) need
    # the "u" flag, which strings.js gives (a RegExp without it splits them into surrogates)
    assert CONTROL_LINE_CLASS.startswith("[") and CONTROL_LINE_CLASS.endswith("]")
    inner = CONTROL_LINE_CLASS[1:-1]
    assert "[" not in inner and "]" not in inner and "\\" not in inner
    assert not inner.startswith("^")
    assert "'gu')" in strings_js()
