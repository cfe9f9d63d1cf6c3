"""protocol/vt.py: every sequence a viewer's emulator gets is within bounds.

Known bombs are bounded (REP, insert/delete/erase counts, scrolls, scroll
regions, cursor moves, window operations, 8-bit CSI, C0 controls hidden inside
a sequence, over-long parameter lists and strings); ordinary output passes
unchanged; any cut of the input gives the same output as one ``feed``, and the
output is bounded in size and in what it may ask of an emulator.
"""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from tether.protocol.terminal import MAX_SIZE
from tether.protocol.vt import COUNT_MAX, NAME_MAX, PARAMS_MAX, STRING_MAX, VtFilter

CSI = re.compile(rb"\x1b\[([<=>?]?)([0-9:;]*)([\x20-\x2f]*)([\x40-\x7e])")
#: what the output may contain: text without ESC or 8-bit introducers, and whole sequences
SHAPE = re.compile(
    rb"(?:[^\x1b\xc2]|\xc2[^\x90\x98\x9b\x9d\x9e\x9f]"
    rb"|\x1b\[[<=>?]?[0-9:;]*[\x20-\x2f]*[\x40-\x7e]"
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[PX^_][^\x1b]*\x1b\\"
    rb"|\x1b[\x20-\x2f]*[\x30-\x7e])*\Z", re.S)


def bounded(data: bytes) -> bytes:
    return VtFilter().feed(data)


def in_bounds(out: bytes) -> None:
    """What every output must be: each number within its bound, no window op but titles."""
    assert SHAPE.match(out), out[:200]
    out.decode()  # valid UTF-8
    for prefix, params, inter, final in CSI.findall(out):
        numbers = [int(n) for n in re.findall(rb"[0-9]+", params)]
        assert len(re.findall(rb"[;:]", params)) < PARAMS_MAX
        mode = final in b"hl" or (inter == b"$" and final == b"p") or (
            prefix == b"?" and final in b"sr")
        assert all(n <= (NAME_MAX if mode else COUNT_MAX) for n in numbers), (params, final)
        if final == b"t" and not prefix and not inter:
            assert numbers[:1] in ([22], [23]), params


def test_the_limits_are_the_largest_screen() -> None:
    assert COUNT_MAX == MAX_SIZE


def test_the_repeat_bomb_is_bounded() -> None:
    assert bounded(b"X\x1b[2147483647b") == b"X\x1b[1000b"


def test_every_count_and_position_is_clamped() -> None:
    for final in b"@ABCDEFGHIJKLMPSTXZ^`abcdefgr":
        seq = b"\x1b[99999;88888" + bytes([final])
        assert bounded(seq) == b"\x1b[1000;1000" + bytes([final]), seq
    # rectangles, columns, scrolling left/right, cursor style: each number too
    assert bounded(b"\x1b[65;1;1;99999;99999$x") == b"\x1b[65;1;1;1000;1000$x"
    assert bounded(b"\x1b[77777'}\x1b[77777 @\x1b[77777 q") == (
        b"\x1b[1000'}\x1b[1000 @\x1b[1000 q")
    assert bounded(b"\x1b[38:2::99999:0:0m") == b"\x1b[38:2::1000:0:0m"


def test_line_operations_are_clamped_to_the_screens_rows() -> None:
    f = VtFilter()
    f.resize(40)
    assert f.feed(b"\x1b[1000S\x1b[99T\x1b[41L\x1b[5M\x1b[9999^\x1b[S") == (
        b"\x1b[40S\x1b[40T\x1b[40L\x1b[5M\x1b[40^\x1b[S")
    assert f.feed(b"\x1b[99A\x1b[99b") == b"\x1b[99A\x1b[99b"  # other counts: the screen's max
    f.resize(10**6)
    assert f.rows == COUNT_MAX


def test_modes_are_names_not_counts() -> None:
    assert bounded(b"\x1b[?1049h\x1b[?2004l\x1b[?2026$p") == b"\x1b[?1049h\x1b[?2004l\x1b[?2026$p"
    assert bounded(b"\x1b[?9999999h") == b"\x1b[?65535h"


def test_window_operations_that_resize_move_or_report_are_dropped() -> None:
    for ops in (b"8;9999;9999", b"4;99999;99999", b"3;0;0", b"9;1", b"10;1", b"14", b"18",
                b"21", b"1", b"2", b"48", b"1000"):
        assert bounded(b"\x1b[" + ops + b"t") == b"", ops
    assert bounded(b"\x1b[22;0t\x1b[23;0t") == b"\x1b[22;0t\x1b[23;0t"  # the title stack


def test_an_8_bit_csi_is_bounded_and_written_in_7_bits() -> None:
    assert bounded("X\u009b2147483647b".encode()) == b"X\x1b[1000b"
    assert bounded("\u009d0;t\u009c".encode()) == b"\x1b]0;t\x1b\\"


def test_a_control_inside_a_sequence_hides_no_digit() -> None:
    # emulators execute the LF in place and go on collecting the number
    assert bounded(b"X\x1b[21474\n83647b") == b"X\n\x1b[1000b"
    assert bounded(b"X\x1b\r[2147483647b") == b"X\r\x1b[1000b"
    assert bounded(b"X\x1b[2147\x7f483647b") == b"X\x1b[1000b"


def test_over_long_sequences_are_dropped_whole() -> None:
    params = b";".join([b"1"] * (PARAMS_MAX + 1))
    assert bounded(b"\x1b[" + params + b"mA") == b"A"
    assert bounded(b"\x1b[" + b"0" * 1000 + b"bA") == b"A"
    assert bounded(b"\x1b]0;" + b"t" * STRING_MAX + b"\x07A") == b"A"
    assert bounded(b"\x1bP" + b"q" * (STRING_MAX + 1) + b"\x1b\\A") == b"A"
    assert bounded(b"\x1b_" + b"q" * (STRING_MAX + 1) + "\u009c".encode() + b"A") == b"A"
    ok = b"\x1b]0;" + b"t" * 100 + b"\x07"
    assert bounded(ok) == ok


def test_what_is_held_stays_bounded() -> None:
    f = VtFilter()
    for chunk in (b"\x1b", b"\n" * 100_000, b"\x1b[" + b"1;" * 10_000, b"\x1b]" + b"t" * 10**5):
        f.feed(chunk)
        assert len(f._held) <= 4 * STRING_MAX


def test_broken_off_sequences_leave_nothing_behind() -> None:
    assert bounded(b"\x1b[99\x1b[1mA") == b"\x1b[1mA"
    assert bounded(b"\x1b[99\x18A") == b"\x18A"
    assert bounded(b"\x1b]0;x\x1bA") == b"\x1bA"  # ESC A is itself a sequence


def test_ordinary_output_passes_unchanged() -> None:
    for text in (b"plain ls output\r\n", "é日🙂\r\n".encode(),
                 b"\x1b[0m\x1b[01;34mdir\x1b[0m \x1b[38;5;208morange\x1b[39m",
                 b"\x1b[?1049h\x1b[22;0;0t\x1b[1;24r\x1b[H\x1b[2J\x1b[K\x1b[3;5H\x1b[5 q",
                 b"\x1b]0;user@host: ~\x07\x1b]8;;https://example.org\x1b\\link\x1b]8;;\x1b\\",
                 b"\x1b(B\x1b)0\x1b7\x1b8\x1b=\x1b>\x1bM\x1b#8", b"\x1b[4:3m\x1b[58:2::1:2:3m"):
        assert bounded(text) == text, text


def test_what_is_held_when_the_stream_ends_never_comes_out() -> None:
    f = VtFilter()
    assert f.feed(b"a\x1b[21474") == b"a"
    assert not f.idle
    assert f.feed(b"83647b") == b"\x1b[1000b"
    assert f.idle


PIECES = st.sampled_from([
    b"\x1b", b"[", b"]", b"P", b"_", b"\\", b"\x07", b"\x9b", b"\xc2", b"\x9c", b"\x9d", b"\x18",
    b"\n", b"\r", b"\x7f", b";", b":", b"?", b"$", b" ", b"'", b"0", b"9", b"99999",
    b"2147483647", b"b", b"t", b"m", b"h", b"r", b"x", b"A", b"\xe2\x82\xac", b"\xff",
    b"\x1b[", b"\x1b]0;", b"\x1bP", b"\x1b\\",
])
STREAMS = st.lists(PIECES, max_size=60).map(b"".join) | st.binary(max_size=300)


@settings(max_examples=300)
@given(STREAMS)
def test_any_input_comes_out_in_bounds_and_no_bigger_than_thrice(data: bytes) -> None:
    out = bounded(data)
    in_bounds(out)
    assert len(out) <= 3 * len(data)


@settings(max_examples=200)
@given(STREAMS)
def test_a_cut_at_every_position_gives_the_same_output(data: bytes) -> None:
    whole = bounded(data)
    for cut in range(len(data) + 1):
        f = VtFilter()
        first = f.feed(data[:cut])
        in_bounds(first)
        assert first + f.feed(data[cut:]) == whole, cut


@settings(max_examples=100)
@given(STREAMS, st.lists(st.integers(min_value=1, max_value=7), min_size=1, max_size=40))
def test_any_chunking_gives_the_same_output(data: bytes, sizes: list[int]) -> None:
    f, out, at, i = VtFilter(), b"", 0, 0
    while at < len(data):
        n = sizes[i % len(sizes)]
        out += f.feed(data[at:at + n])
        at, i = at + n, i + 1
    assert out == bounded(data)


def test_an_over_long_string_split_anywhere_is_dropped_the_same() -> None:
    data = b"A\x1b]0;" + b"t" * (STRING_MAX + 10) + b"\x1b\\B\x1b[" + b"9" * 300 + b"bC"
    whole = bounded(data)
    assert whole == b"AB\x1b[1000bC" or whole == b"ABC"
    for cut in range(0, len(data), 7):
        f = VtFilter()
        assert f.feed(data[:cut]) + f.feed(data[cut:]) == whole, cut
