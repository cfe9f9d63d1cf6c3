"""Untrusted text made safe to show the customer (protocol/sanitize.py)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.protocol.sanitize import WatchFilter, clean_text

BIDI = ["\u061c", "\u200e", "\u200f", "\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
        "\u2066", "\u2067", "\u2068", "\u2069"]
C0 = [chr(c) for c in range(0x20)]
C1 = [chr(c) for c in range(0x80, 0xA0)]


# --- clean_text -----------------------------------------------------------------


def test_clean_text_keeps_ordinary_text() -> None:
    assert clean_text("Alice Martin") == "Alice Martin"
    assert clean_text("Zoë Ångström (Ünïcode IT) 日本 🙂") == "Zoë Ångström (Ünïcode IT) 日本 🙂"


@pytest.mark.parametrize("ch", C0 + ["\x7f"] + C1 + BIDI,
                         ids=lambda ch: f"U+{ord(ch):04X}")
def test_clean_text_strips_every_control_and_bidi_character(ch: str) -> None:
    assert clean_text(f"Alice{ch}") == "Alice"
    assert ch not in clean_text(f"Ali{ch}ce")
    assert ch not in clean_text(ch * 50)


def test_clean_text_defuses_a_forged_name() -> None:
    # a name that would erase the line and print another organisation
    forged = clean_text("Alice\x1b[2K\rBank IT")
    assert "\x1b" not in forged and "\r" not in forged
    assert forged.startswith("Alice") and forged.endswith("Bank IT")
    assert clean_text("Alice\x1b]0;title\x07 Martin") == "Alice Martin"
    # a right-to-left override that would show "Acme IT" reversed into something else
    assert "\u202e" not in clean_text("Alice (\u202eTI emcA)")
    assert clean_text("evil\u202egpj.exe") == "evilgpj.exe"
    assert clean_text("line one\nline two") == "line oneline two"


def test_clean_text_limits_length() -> None:
    assert clean_text("x" * 500) == "x" * 200
    assert clean_text("x" * 500, 10) == "x" * 10
    # the limit counts what is left after cleaning
    assert clean_text("\x00" * 300 + "abc", 5) == "abc"


@given(st.text())
def test_clean_text_never_returns_controls_or_bidi(text: str) -> None:
    out = clean_text(text)
    for ch in out:
        assert not (ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F), repr(ch)
        assert ch not in BIDI, repr(ch)
    assert len(out) <= 200


# --- WatchFilter: what passes ---------------------------------------------------------


def one_shot(data: bytes) -> bytes:
    return WatchFilter().feed(data)


@pytest.mark.parametrize("data", [
    b"hello world",
    b"line\r\nnext\ttab\x08back",
    "héllo — 日本語 🙂".encode(),
    b"\x1b[0m",
    b"\x1b[m",
    b"\x1b[1;31mred\x1b[0m",
    b"\x1b[38;5;196mx\x1b[39m",
    b"\x1b[38:2::255:0:0mtruecolor\x1b[m",
])
def test_watch_filter_keeps_text_whitespace_and_sgr(data: bytes) -> None:
    assert one_shot(data) == data


@pytest.mark.parametrize("data, expected", [
    # OSC 0 title, ended by BEL and by ST
    (b"a\x1b]0;pwned title\x07b", b"ab"),
    (b"a\x1b]0;pwned title\x1b\\b", b"ab"),
    (b"a\x1b]2;title\x07b", b"ab"),
    # OSC 52: write the clipboard
    (b"a\x1b]52;c;cm0gLXJmIH4K\x07b", b"ab"),
    # OSC 8: hyperlink
    (b"\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\", b"click"),
    # DCS (e.g. DECRQSS, a query that makes the terminal answer) and other strings
    (b"a\x1bP$qm\x1b\\b", b"ab"),
    (b"a\x1bP1;2|17/ab\x1b\\b", b"ab"),
    (b"a\x1bXsos\x1b\\b", b"ab"),
    (b"a\x1b^pm\x1b\\b", b"ab"),
    (b"a\x1b_apc\x1b\\b", b"ab"),
    # cursor movement and erasing: could overwrite the "session active" indicator
    (b"a\x1b[Hb", b"ab"),
    (b"a\x1b[10;20Hb", b"ab"),
    (b"a\x1b[2Jb", b"ab"),
    (b"a\x1b[2Kb", b"ab"),
    (b"a\x1b[5Ab", b"ab"),
    (b"a\x1b[3Db", b"ab"),
    (b"a\x1b[sb\x1b[u", b"ab"),
    (b"a\x1b7b\x1b8", b"ab"),
    (b"a\x1bcb", b"ab"),  # full reset
    (b"a\x1b[?1049hb", b"ab"),  # alternate screen
    (b"a\x1b[?25lb", b"ab"),  # hide cursor
    (b"a\x1b[1;24rb", b"ab"),  # scroll region
    (b"a\x1b(0b", b"ab"),  # line-drawing charset
    # terminal queries: the answer would be typed into the consent prompt
    (b"a\x1b[6nb", b"ab"),
    (b"a\x1b[cb", b"ab"),
    (b"a\x1b[0cb", b"ab"),
    (b"a\x1b[>cb", b"ab"),
    (b"a\x1b[5nb", b"ab"),
    (b"a\x1b[21tb", b"ab"),
    (b"a\x1bZb", b"ab"),
    # not SGR even though they end in m
    (b"a\x1b[>4;2mb", b"ab"),
    (b"a\x1b[?1mb", b"ab"),
    # 8-bit C1 controls as UTF-8 (CSI, OSC, DCS, ST)
    ("a\u009b6nb".encode(), b"a6nb"),
    ("a\u009d0;t\u009cb".encode(), b"a0;tb"),
    ("a\u0090qb".encode(), b"aqb"),
    # other C0 controls and DEL
    (b"a\x00\x01\x05\x07\x0b\x0c\x0e\x0f\x1a\x1c\x1f\x7fb", b"ab"),
    # a lone ESC and an ESC followed by a control
    (b"a\x1b\x00[6nb", b"a[6nb"),
])
def test_watch_filter_drops_everything_else(data: bytes, expected: bytes) -> None:
    assert one_shot(data) == expected


def test_watch_filter_passes_invalid_utf8_as_replacement_characters() -> None:
    assert one_shot(b"a\xffb") == "a\ufffdb".encode()
    assert one_shot(b"a\xc0\xafb") == "a\ufffd\ufffdb".encode()  # overlong "/" stays junk


# --- WatchFilter: chunk boundaries -----------------------------------------------------

SPLIT_CASES = [
    b"before\x1b[1;31mred\x1b[0mafter",
    b"x\x1b]0;a title\x07y",
    b"x\x1b]52;c;cm0gLXJmIH4K\x1b\\y",
    b"x\x1b]8;;https://e.example/\x1b\\link\x1b]8;;\x1b\\y",
    b"x\x1bP$qm\x1b\\y",
    b"x\x1b[6ny\x1b[cz",
    b"x\x1b[10;20Hy",
    b"x\x1b(0y\x1b7z",
    "é€𝄞 日本 🙂 \x1b[32mgrün\x1b[m".encode(),
    "ab\u009b6n\u009d0;t\u009ccd".encode(),
    b"\x1b\x1b[m\x1b",
]


@pytest.mark.parametrize("data", SPLIT_CASES)
def test_watch_filter_gives_the_same_result_split_at_every_byte(data: bytes) -> None:
    whole = one_shot(data)
    for i in range(len(data) + 1):
        f = WatchFilter()
        assert f.feed(data[:i]) + f.feed(data[i:]) == whole, i


@pytest.mark.parametrize("data", SPLIT_CASES)
def test_watch_filter_gives_the_same_result_fed_one_byte_at_a_time(data: bytes) -> None:
    f = WatchFilter()
    assert b"".join(f.feed(data[i:i + 1]) for i in range(len(data))) == one_shot(data)


def test_a_split_utf8_character_is_written_whole() -> None:
    f = WatchFilter()
    first = f.feed("a€".encode()[:2])  # "a" and the first byte of "€"
    assert first == b"a"
    assert f.feed("€".encode()[1:]) == "€".encode()


def test_a_split_query_never_reaches_the_customer() -> None:
    f = WatchFilter()
    out = f.feed(b"ok\x1b[") + f.feed(b"6") + f.feed(b"n") + f.feed(b"done")
    assert out == b"okdone"


def test_a_long_osc52_split_across_reads_is_dropped_whole() -> None:
    # A PTY read returns ~4 KiB, so a clipboard write of a few KiB always arrives in
    # pieces; none of its payload may show up in the customer's view.
    payload = b"Y2xpcGJvYXJkIHBheWxvYWQ=" * 400  # 9600 bytes of base64
    data = b"before\x1b]52;c;" + payload + b"\x07after"
    assert one_shot(data) == b"beforeafter"
    f = WatchFilter()
    out = b"".join(f.feed(data[i:i + 4096]) for i in range(0, len(data), 4096))
    assert out == b"beforeafter"


def test_a_long_sixel_image_split_across_reads_is_dropped_whole() -> None:
    # img2sixel in the shared shell: a DCS of many KiB, read in PTY-sized pieces
    sixel = b"\x1bPq#0;2;0;0;0#1;2;100;100;0" + b"#1~~@@vv@@~~@@~~$-" * 1200 + b"\x1b\\"
    data = b"before" + sixel + b"after\x1b[6n"
    assert one_shot(data) == b"beforeafter"
    for size in (4096, 4095, 1000, 7):
        f = WatchFilter()
        out = b"".join(f.feed(data[i:i + size]) for i in range(0, len(data), size))
        assert out == b"beforeafter", size


# --- WatchFilter: whatever comes in ----------------------------------------------------

SGR_OR_TEXT = re.compile(rb"(?:\x1b\[[0-9;:]*m|[^\x1b])*\Z", re.S)
FORBIDDEN_C0 = set(range(0x20)) - {0x08, 0x09, 0x0A, 0x0D, 0x1B}


def assert_safe(out: bytes) -> None:
    text = out.decode("utf-8")  # valid UTF-8, or this raises
    assert SGR_OR_TEXT.match(out), out
    for ch in text:
        assert ord(ch) not in FORBIDDEN_C0, repr(ch)
        assert not (0x7F <= ord(ch) <= 0x9F), repr(ch)


TERMINAL_BYTES = st.lists(
    st.one_of(
        st.binary(max_size=8),
        st.sampled_from([b"\x1b", b"[", b"]", b"P", b"\\", b"\x07", b"m", b";", b"0", b"6n",
                         b"\x1b[", b"\x1b]", b"\x1bP", b"\x1b\\", b"\xc2\x9b", b"\xc2\x9d",
                         b"\xc2\x9c", b"\xe2\x82", b"\xac", b"\xf0\x9f", b"\x99\x82", b"\r\n",
                         b"\x08", b"\t", b"\x1b[31m", b"\x1b[0m", b"\x1b[6n", b"2;3", b"?"]),
    ),
    max_size=40,
).map(b"".join)


@given(TERMINAL_BYTES, st.lists(st.integers(min_value=0, max_value=400), max_size=4))
def test_watch_filter_output_is_always_safe(data: bytes, cuts: list[int]) -> None:
    f = WatchFilter()
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    outputs = [f.feed(c) for c in chunks]
    for out in outputs:
        assert_safe(out)
    assert_safe(b"".join(outputs))


@given(st.binary())
def test_watch_filter_output_is_always_safe_for_any_bytes(data: bytes) -> None:
    assert_safe(one_shot(data))


@given(TERMINAL_BYTES, st.integers(min_value=0, max_value=400))
def test_watch_filter_split_anywhere_equals_one_shot(data: bytes, cut: int) -> None:
    f = WatchFilter()
    assert f.feed(data[:cut]) + f.feed(data[cut:]) == one_shot(data)


LONG_SEQUENCES = st.builds(
    lambda intro, body, end, tail: intro + body + end + tail,
    st.sampled_from([b"\x1b]", b"\x1b]52;c;", b"\x1bP", b"\x1bPq", b"\x1b[", b"\x1bX", b"\x1b_"]),
    st.one_of(st.binary(min_size=4000, max_size=9000),
              st.integers(min_value=4000, max_value=9000).map(lambda n: b"1;" * (n // 2))),
    st.sampled_from([b"", b"\x07", b"\x1b\\", b"m", b"H", b"\x1b", b"\x1b[31m"]),
    TERMINAL_BYTES,
)


@settings(max_examples=60)
@given(LONG_SEQUENCES, st.lists(st.integers(min_value=0, max_value=10_000), max_size=4))
def test_watch_filter_output_is_safe_for_over_long_sequences(data: bytes, cuts: list[int]) -> None:
    f = WatchFilter()
    points = sorted({min(c, len(data)) for c in cuts})
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    outputs = [f.feed(c) for c in chunks]
    for out in outputs:
        assert_safe(out)
    assert_safe(b"".join(outputs))


# --- no text the customer cannot read (a technician's conceal, faint or colour tricks) ---

def test_conceal_never_reaches_the_customers_view() -> None:
    out = one_shot(b"T$ \x1b[8mrm -rf ~/Documents\x1b[0m")
    assert out == b"T$ rm -rf ~/Documents\x1b[0m"


COLOUR = rb"38(?:;5;(\d+)|;2;(\d+);(\d+);(\d+)|:5:(\d+)|:2::(\d+):(\d+):(\d+))"


@pytest.mark.parametrize("trick", [
    b"\x1b[8m", b"\x1b[2m", b"\x1b[2;30m", b"\x1b[7m", b"\x1b[7;30m", b"\x1b[30;40m",
    b"\x1b[31;41m", b"\x1b[38;5;1;48;5;1m", b"\x1b[38;2;9;9;9;48;2;9;9;9m",
    b"\x1b[38:2::9:9:9m\x1b[48:2::9:9:9m", b"\x1b[38:5:16m", b"\x1b[97m", b"\x1b[38;5;255m",
    b"\x1b[38;2;0;0;40m", b"\x1b[38;2;255;255;0m", b"\x1b[107m", b"\x1b[49;5;6m",
    # out of range: a terminal that keeps the low 8 bits draws 256 as 0 (black)
    b"\x1b[38;2;256;0;0m", b"\x1b[38:2::256:0:0m", b"\x1b[38;5;256m", b"\x1b[38;2;0;0;-1m",
])
def test_no_sgr_can_make_text_unreadable(trick: bytes) -> None:
    out = one_shot(trick + b"hidden")
    assert out.endswith(b"hidden")
    for params in re.findall(rb"\x1b\[([0-9;:]*)m", out):
        for colour in re.findall(COLOUR, params):
            assert all(int(v) <= 255 for v in colour if v), out
        params = re.sub(rb"(?:^|;)38(?:;5;\d+|;2;\d+;\d+;\d+|:[\d:]*)", b"", params)
        codes = [int(c.split(b":")[0] or 0) for c in params.split(b";")]
        assert not {2, 5, 6, 7, 8} & set(codes), out
        assert not any(40 <= c <= 49 or 100 <= c <= 107 for c in codes), out


@pytest.mark.parametrize(("sgr", "kept"), [
    (b"\x1b[1;31m", b"\x1b[1;31m"), (b"\x1b[01;34m", b"\x1b[1;34m"),
    (b"\x1b[4;3;92m", b"\x1b[4;3;92m"), (b"\x1b[38;5;208m", b"\x1b[38;5;208m"),
    (b"\x1b[38;2;200;30;30m", b"\x1b[38;2;200;30;30m"), (b"\x1b[1;44;33m", b"\x1b[1;33m"),
    (b"\x1b[7;32m", b"\x1b[32m"), (b"\x1b[30m", b"\x1b[39m"), (b"\x1b[4:0m", b"\x1b[24m"),
])
def test_readable_colours_and_styles_stay(sgr: bytes, kept: bytes) -> None:
    assert one_shot(sgr + b"x") == kept + b"x"
