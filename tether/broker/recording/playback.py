"""A terminal recording as the console's player gets it: output within the viewers' bounds.

Recordings stay raw on disk (they are evidence, and bundles and downloads carry
them as sealed), but whatever plays one is a terminal emulator in a person's
browser. The player gets each output event through the same
:class:`~tether.protocol.vt.VtFilter` as the live view and the replay (one
filter for the whole recording, so a sequence split between two events is
bounded like any other, following the recorded screen size); every other
event passes unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path

from ...protocol.vt import VtFilter

BLOCK = 256 * 1024  # bytes handed on at a time


def bounded_cast(path: Path) -> Generator[bytes, None, None]:
    """The recording's lines, in blocks, with every ``o`` event's text bounded."""
    bounds = VtFilter()
    block: list[bytes] = []
    size = 0
    with path.open("rb") as f:
        for number, line in enumerate(f):
            if not number or b'"r"' in line:  # the screen's rows, as the live view had them
                _resize(line, bounds)
            elif not (bounds.idle and b"\\u001b" not in line and b"\xc2" not in line):
                line = _bounded(line, bounds)
            block.append(line)
            size += len(line)
            if size >= BLOCK:
                yield b"".join(block)
                block, size = [], 0
    if block:
        yield b"".join(block)


def _resize(line: bytes, bounds: VtFilter) -> None:
    try:
        event = json.loads(line)
        if isinstance(event, dict):  # the header
            bounds.resize(int(event["height"]))
        elif isinstance(event, list) and event[1] == "r":
            bounds.resize(int(str(event[2]).partition("x")[2]))
    except (ValueError, KeyError, IndexError, TypeError):
        pass  # not a size: the bounds stay as they were


def _bounded(line: bytes, bounds: VtFilter) -> bytes:
    try:
        event = json.loads(line)
    except ValueError:
        return b""  # a torn last line (the broker stopped mid-write) is left out
    if not (isinstance(event, list) and len(event) == 3 and event[1] == "o"
            and isinstance(event[2], str)):
        return line
    event[2] = bounds.feed(event[2].encode(errors="replace")).decode()
    return json.dumps(event, ensure_ascii=False, separators=(", ", ": ")).encode() + b"\n"
