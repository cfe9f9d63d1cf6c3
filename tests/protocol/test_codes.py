"""Session codes (protocol/codes.py): Damm check digit, parsing what people type."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether.protocol.codes import CODE_DIGITS, damm, format_code, generate, normalize
from tether.protocol.errors import AuthError, BadCode

DIGITS = "0123456789"
SAMPLE = [generate() for _ in range(200)]


def test_generated_codes_are_nine_ascii_digits_with_a_valid_check_digit() -> None:
    for code in SAMPLE:
        assert len(code) == CODE_DIGITS == 9
        assert set(code) <= set(DIGITS)
        assert damm(code) == 0
        assert normalize(code) == code


def test_generated_codes_are_random() -> None:
    # 200 draws from 10^8 bodies: more than a few repeats means it is not random
    assert len(set(SAMPLE)) > 190


@pytest.mark.parametrize("code", SAMPLE[:100])
def test_every_single_digit_substitution_is_caught(code: str) -> None:
    for i, right in enumerate(code):
        for wrong in DIGITS:
            if wrong == right:
                continue
            typo = code[:i] + wrong + code[i + 1:]
            with pytest.raises(BadCode):
                normalize(typo)


@pytest.mark.parametrize("code", SAMPLE[:100])
def test_every_adjacent_transposition_is_caught(code: str) -> None:
    for i in range(CODE_DIGITS - 1):
        if code[i] == code[i + 1]:
            continue
        swapped = code[:i] + code[i + 1] + code[i] + code[i + 2:]
        with pytest.raises(BadCode):
            normalize(swapped)


def test_a_typo_gets_a_message_that_says_so() -> None:
    code = SAMPLE[0]
    typo = code[:-1] + str((int(code[-1]) + 1) % 10)
    with pytest.raises(BadCode, match="typo"):
        normalize(typo)


def test_bad_code_is_an_auth_error_with_http_400() -> None:
    assert issubclass(BadCode, AuthError)
    assert BadCode.http_status == 400
    assert BadCode().message == "That code is not valid"


def test_format_code_groups_by_three() -> None:
    assert format_code("123456789") == "123 456 789"
    code = SAMPLE[1]
    assert format_code(code) == f"{code[:3]} {code[3:6]} {code[6:]}"


@pytest.mark.parametrize("typed", [
    "{0}{1}{2}",
    "{0} {1} {2}",
    "{0}-{1}-{2}",
    "  {0}  -  {1} {2}  ",
    "{0}\t{1}\t{2}",
])
def test_normalize_ignores_spaces_and_dashes(typed: str) -> None:
    code = SAMPLE[2]
    text = typed.format(code[:3], code[3:6], code[6:])
    assert normalize(text) == code


@pytest.mark.parametrize("table", [
    "٠١٢٣٤٥٦٧٨٩",  # Arabic-Indic
    "０１２３４５６７８９",  # fullwidth
    "۰۱۲۳۴۵۶۷۸۹",  # extended Arabic-Indic
    "०१२३४५६७८९",  # Devanagari
])
def test_normalize_refuses_unicode_digits(table: str) -> None:
    code = SAMPLE[3]
    # the same code in another script: str.isdigit() and int() would accept it
    whole = code.translate(str.maketrans(DIGITS, table))
    assert int(whole) == int(code)
    with pytest.raises(BadCode):
        normalize(whole)
    # one look-alike digit among ASCII ones
    for i in range(CODE_DIGITS):
        mixed = code[:i] + table[int(code[i])] + code[i + 1:]
        with pytest.raises(BadCode):
            normalize(mixed)


def test_normalize_refuses_arabic_indic_three_and_fullwidth_three() -> None:
    with pytest.raises(BadCode):
        normalize("12٣456789")
    with pytest.raises(BadCode):
        normalize("12３456789")


@pytest.mark.parametrize("text", [
    "",
    "   ",
    "12345678",  # 8 digits
    "1234567890",  # 10 digits
    "12a456789",
    "abc def ghi",
    "123.456.789",
    "123_456_789",
    "+12345678",
    "123456789\n",
    "123456789\x00",
])
def test_normalize_refuses_wrong_length_and_other_characters(text: str) -> None:
    with pytest.raises(BadCode):
        normalize(text)


def test_normalize_refuses_over_long_input() -> None:
    code = SAMPLE[4]
    with pytest.raises(BadCode):
        normalize(code * 1000)
    with pytest.raises(BadCode):
        normalize("1" * 1_000_000)
    # a valid code buried in a flood of separators is still refused
    with pytest.raises(BadCode):
        normalize(" " * 100 + code)
    with pytest.raises(BadCode):
        normalize("-" * 100 + code)


@given(st.text(alphabet=DIGITS, min_size=8, max_size=8))
def test_format_then_normalize_round_trips(body: str) -> None:
    code = body + str(damm(body))
    assert normalize(format_code(code)) == code
    assert normalize(format_code(code).replace(" ", "-")) == code


def test_generate_format_normalize_round_trips() -> None:
    for code in SAMPLE:
        assert normalize(format_code(code)) == code


@given(st.text())
def test_normalize_returns_a_valid_code_or_raises_bad_code(text: str) -> None:
    try:
        result = normalize(text)
    except BadCode:
        return
    assert len(result) == 9
    assert set(result) <= set(DIGITS)
    assert damm(result) == 0


@given(st.text(alphabet=DIGITS + " -\t٣３", max_size=40))
def test_normalize_on_digit_like_text_returns_a_valid_code_or_raises_bad_code(text: str) -> None:
    try:
        result = normalize(text)
    except BadCode:
        return
    assert len(result) == 9
    assert set(result) <= set(DIGITS)
    assert damm(result) == 0
    assert result == "".join(ch for ch in text if ch in DIGITS)
