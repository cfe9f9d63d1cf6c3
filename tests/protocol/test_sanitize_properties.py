"""Properties of protocol/sanitize.py not covered by test_sanitize.

clean_text: any limit is honoured, the result is a fixed point (cleaning twice changes
nothing), text with nothing to remove passes unchanged, it never raises on any string
(lone surrogates included).

WatchFilter: the same bytes fed in *any* chunking (not just one cut) give the same
output as one ``feed``, including chunk edges inside a UTF-8 character or a sequence;
every chunk's output is safe on its own (valid UTF-8, no ESC but SGR, no C0 but
CR/LF/TAB/BS, no C1, no bidi control), and no byte that was not in the input appears.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.protocol.sanitize import CONTROL_LINE_CLASS, WatchFilter, clean_text

BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
SGR_OR_TEXT = re.compile(rb"(?:\x1b\[[0-9;:]*m|[^\x1b])*\Z", re.S)
ALLOWED_C0 = {0x08, 0x09, 0x0A, 0x0D}


def safe_line(out: str) -> None:
    for ch in out:
        assert not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F), repr(ch)
        assert ch not in BIDI, repr(ch)


# --- clean_text ----------------------------------------------------------------------------

ANY_TEXT = st.text(alphabet=st.characters(codec=None)) | st.text(
    alphabet=st.sampled_from(["\x1b", "[", "]", "\x07", "\\", "m", "0", ";", "P", "\u202e",
                              "\u009b", "\x00", "a", "é", "\ud800"]))


@given(ANY_TEXT, st.integers(min_value=0, max_value=300))
def test_clean_text_honours_any_limit(text: str, limit: int) -> None:
    out = clean_text(text, limit)
    assert len(out) <= limit
    safe_line(out)
    assert out == clean_text(text)[:limit] or len(clean_text(text)) < limit


@given(ANY_TEXT)
def test_clean_text_is_a_fixed_point(text: str) -> None:
    once = clean_text(text, 10_000)
    assert clean_text(once, 10_000) == once


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"),
                                      blacklist_characters="".join(BIDI)).filter(
    lambda ch: not re.fullmatch(CONTROL_LINE_CLASS, ch)), max_size=200))
def test_clean_text_keeps_text_with_nothing_to_remove(text: str) -> None:
    assert clean_text(text) == text


@given(ANY_TEXT)
def test_clean_text_only_removes(text: str) -> None:
    """Every character of the result comes from the input, in order."""
    out = iter(text)
    assert all(ch in out for ch in clean_text(text, 10_000))


# --- WatchFilter -------------------------------------------------------------------------

PIECES = [b"\x1b", b"[", b"]", b"P", b"X", b"^", b"_", b"\\", b"\x07", b"m", b";", b":", b"0",
          b"1", b"6n", b"?", b">", b"$q", b"52;c;", b"8;;", b"\x1b[", b"\x1b]", b"\x1bP",
          b"\x1b\\", b"\x1b[31m", b"\x1b[0m", b"\xc2\x9b", b"\xc2\x9d", b"\xc2\x9c",
          b"\xe2\x80\xae", b"\xe2\x82", b"\xac", b"\xf0\x9f", b"\x99\x82", b"\xff", b"\r\n",
          b"\x08", b"\t", b"\x00", b"\x7f", b"abc", b" "]
TERMINAL_BYTES = st.lists(st.one_of(st.binary(max_size=6), st.sampled_from(PIECES)),
                          max_size=60).map(b"".join)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def assert_safe(out: bytes) -> None:
    text = out.decode("utf-8")  # raises unless valid UTF-8
    assert SGR_OR_TEXT.match(out), out
    for ch in text:
        assert ord(ch) >= 0x20 or ord(ch) in ALLOWED_C0 or ch == "\x1b", repr(ch)
        assert not (0x7F <= ord(ch) <= 0x9F), repr(ch)
        assert ch not in BIDI, repr(ch)


@settings(max_examples=200)
@given(TERMINAL_BYTES, st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_chunking_gives_the_one_shot_output(data: bytes, cuts: list[int]) -> None:
    whole = WatchFilter().feed(data)
    f = WatchFilter()
    outputs = [f.feed(chunk) for chunk in chunked(data, cuts)]
    assert b"".join(outputs) == whole
    for out in outputs:
        assert_safe(out)


@given(TERMINAL_BYTES)
def test_byte_at_a_time_gives_the_one_shot_output(data: bytes) -> None:
    f = WatchFilter()
    assert b"".join(f.feed(data[i:i + 1]) for i in range(len(data))) == WatchFilter().feed(data)


@given(TERMINAL_BYTES, st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_empty_feeds_change_nothing(data: bytes, cuts: list[int]) -> None:
    f = WatchFilter()
    out = b""
    for chunk in chunked(data, cuts):
        out += f.feed(b"") + f.feed(chunk) + f.feed(b"")
    assert out == WatchFilter().feed(data)


@given(TERMINAL_BYTES)
def test_nothing_is_invented(data: bytes) -> None:
    """Printable ASCII in the output appears in the input in the same order (a filter
    only removes, plus U+FFFD for bytes that are not UTF-8)."""
    out = WatchFilter().feed(data).decode().replace("\ufffd", "")
    source = iter(data.decode("utf-8", "replace"))
    assert all(ch in source for ch in out)


@given(st.lists(TERMINAL_BYTES, max_size=4))
def test_a_filter_keeps_working_after_any_input(parts: list[bytes]) -> None:
    """Whatever came before, once a sequence is closed plain text passes unchanged."""
    f = WatchFilter()
    for part in parts:
        f.feed(part)
    f.feed(b"\x1b\\\x07")  # end any string sequence; a lone ESC swallows one byte at most
    f.feed(b"\x1b[m")
    assert f.feed(b"hello\r\n") == b"hello\r\n"


LONG = st.builds(
    lambda intro_end, n, body: intro_end[0] + body * n + intro_end[1],
    st.sampled_from([(b"\x1b]", b"\x07"), (b"\x1b]52;c;", b"\x07"), (b"\x1b]0;", b"\x1b\\"),
                     (b"\x1b]8;;", b"\x1b\\"), (b"\x1bP", b"\x1b\\"), (b"\x1bPq", b"\x1b\\"),
                     (b"\x1bX", b"\x1b\\"), (b"\x1b_", b"\x1b\\"), (b"\x1b^", b"\x1b\\")]),
    st.integers(min_value=1000, max_value=3000),
    st.sampled_from([b"abc", b"Y2xp", b"#1~", b"\xe2\x82\xac"]),
)


@settings(max_examples=60)
@given(LONG, TERMINAL_BYTES, st.lists(st.integers(min_value=0, max_value=10_000), max_size=6))
def test_over_long_string_sequences_are_dropped_whole_in_any_chunking(
        seq: bytes, after: bytes, cuts: list[int]) -> None:
    """An OSC (ended by BEL or ST) or DCS/SOS/PM/APC (ended by ST) longer than the hold
    limit — a big clipboard write, a sixel image — is dropped up to its terminator however
    the reads cut it: the output is that of what follows it; nothing of it leaks."""
    data = b"before" + seq + after
    f = WatchFilter()
    outputs = [f.feed(chunk) for chunk in chunked(data, cuts)]
    for out in outputs:
        assert_safe(out)
    assert b"".join(outputs) == b"before" + WatchFilter().feed(after)


@settings(max_examples=20)
@given(st.sampled_from([b"\x1bP", b"\x1bPq", b"\x1bX", b"\x1b_", b"\x1b^"]),
       st.integers(min_value=1400, max_value=3000),
       st.lists(st.integers(min_value=0, max_value=10_000), max_size=4))
def test_a_bel_inside_a_long_dcs_does_not_end_it_in_any_chunking(
        intro: bytes, n: int, cuts: list[int]) -> None:
    """BEL ends an OSC, not a DCS/SOS/PM/APC (only ST does): what follows a BEL inside
    one is still part of it, whether or not a read cut the sequence."""
    data = b"before" + intro + b"abc" * n + b"\x07 inside the DCS\x1b\\after"
    whole = WatchFilter().feed(data)
    assert whole == b"beforeafter"
    f = WatchFilter()
    outputs = [f.feed(chunk) for chunk in chunked(data, [4096, 8192, *cuts])]
    for out in outputs:
        assert_safe(out)
    assert b"".join(outputs) == whole


LONG_CSI = st.builds(lambda n, end: b"\x1b[" + b"1;" * n + end,
                     st.integers(min_value=2100, max_value=3000), st.sampled_from([b"m", b"H"]))


@settings(max_examples=20)
@given(LONG_CSI, st.lists(st.integers(min_value=0, max_value=7000), max_size=4))
def test_an_over_long_control_sequence_gives_the_same_output_in_any_chunking(
        seq: bytes, cuts: list[int]) -> None:
    """A CSI longer than the hold limit, split by a read, must not turn into text."""
    data = b"before" + seq + b"after"
    f = WatchFilter()
    outputs = [f.feed(chunk) for chunk in chunked(data, cuts)]
    for out in outputs:
        assert_safe(out)
    assert b"".join(outputs) == WatchFilter().feed(data)


UNTERMINATED = st.builds(lambda intro, n: intro + b"x" * n,
                         st.sampled_from([b"\x1b]52;c;", b"\x1bP", b"\x1b[", b"\x1b", b"\x1b ",
                                          b"\x1b_"]),
                         st.integers(min_value=0, max_value=20_000))


@settings(max_examples=40)
@given(st.lists(UNTERMINATED | TERMINAL_BYTES, min_size=1, max_size=4),
       st.integers(min_value=1, max_value=5000))
def test_what_is_held_back_stays_under_the_hold_limit(parts: list[bytes], size: int) -> None:
    """The customer's client holds back at most one short partial sequence, however much
    of an unterminated one the shell prints (memory stays bounded)."""
    f = WatchFilter()
    data = b"".join(parts)
    for i in range(0, len(data), size):
        assert_safe(f.feed(data[i:i + size]))
        assert len(f._held) <= 4096
