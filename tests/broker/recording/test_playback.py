"""recording/playback.py: the player gets the recording with its output bounded.

The file stays as written; ``o`` events go through one VtFilter (a sequence split
between two events is bounded like any other); other events and the header pass
unchanged; a torn last line is left out.
"""

from __future__ import annotations

import json
from pathlib import Path

from tether.broker.recording.playback import bounded_cast


def cast(tmp_path: Path, *events: list[object], tail: bytes = b"") -> Path:
    path = tmp_path / "c.cast"
    lines = [json.dumps({"version": 2, "width": 80, "height": 24})]
    lines += [json.dumps(e, ensure_ascii=False) for e in events]
    path.write_bytes(("\n".join(lines) + "\n").encode() + tail)
    return path


def played(path: Path) -> list[object]:
    return [json.loads(x) for x in b"".join(bounded_cast(path)).splitlines()]


def test_output_is_bounded_and_everything_else_passes(tmp_path: Path) -> None:
    path = cast(tmp_path, [0.1, "o", "X\x1b[2147483647b"], [0.2, "i", "\x1b[2147483647b"],
                [0.3, "m", "viewer attached"], [0.4, "o", "plain\r\n"], [0.5, "r", "80x24"])
    raw = path.read_bytes()
    out = played(path)
    assert out[0] == {"version": 2, "width": 80, "height": 24}
    assert out[1:] == [[0.1, "o", "X\x1b[1000b"], [0.2, "i", "\x1b[2147483647b"],
                       [0.3, "m", "viewer attached"], [0.4, "o", "plain\r\n"],
                       [0.5, "r", "80x24"]]
    assert path.read_bytes() == raw  # the recording itself stays raw


def test_a_sequence_split_between_events_is_bounded(tmp_path: Path) -> None:
    path = cast(tmp_path, [0.1, "o", "X\x1b[21474"], [0.2, "o", "83647bY"],
                [0.3, "o", "\u009b99999S"])
    assert [e[2] for e in played(path)[1:]] == ["X", "\x1b[1000bY", "\x1b[24S"]


def test_a_torn_last_line_is_left_out(tmp_path: Path) -> None:
    path = cast(tmp_path, [0.1, "o", "ok"], tail=b'[0.2, "o", "\\u001b[2147')
    assert played(path)[1:] == [[0.1, "o", "ok"]]


def test_line_operations_follow_the_recorded_rows(tmp_path: Path) -> None:
    path = cast(tmp_path, [0.1, "o", "\x1b[999S"], [0.2, "r", "80x30"], [0.3, "o", "\x1b[999L"])
    assert [e[2] for e in played(path)[1:]] == ["\x1b[24S", "80x30", "\x1b[30L"]
