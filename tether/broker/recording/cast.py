"""asciicast v2 recordings of terminal channels, sealed into the audit log.

Events are encoded here, on the caller's thread (cheap), and written by the
:class:`~.base.FileSink`'s own thread. Output and input keep their own
incremental UTF-8 decoders, so a character split between two frames is
written whole, and the file is always valid UTF-8 JSON lines.
"""

from __future__ import annotations

import codecs
import json
import time
from pathlib import Path
from typing import Any

from .base import FileSink, Seal

#: bytes that need no escaping beyond _ESCAPES: printable ASCII, CR, LF, TAB, BS
_PLAIN = bytes(range(0x20, 0x7F)) + b"\r\n\t\x08"
_ESCAPES = ((b"\\", b"\\\\"), (b'"', b'\\"'), (b"\r", b"\\r"), (b"\n", b"\\n"),
            (b"\t", b"\\t"), (b"\x08", b"\\b"))


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")).encode() + b"\n"


class CastWriter:
    """One terminal channel's recording (the ``cast`` recorder kind)."""

    def __init__(self, path: Path, cols: int, rows: int, *, title: str) -> None:
        self._start = time.monotonic()
        self.started_us = time.time_ns() // 1000  # time zero of the recording, wall clock
        self.sink = FileSink(path, _line({
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "title": title,
            "env": {"TERM": "xterm-256color"},
        }))
        self.path = path
        self._out = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._in = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def size(self) -> int:
        return self.sink.size

    def _event(self, code: str, text: str) -> None:
        if text:
            self.sink.write(_line([round(time.monotonic() - self._start, 6), code, text]))

    def output(self, data: bytes) -> None:
        if not data.translate(None, _PLAIN) and not self._out.getstate()[0]:
            # Fast path for floods of printable ASCII: the same bytes json.dumps
            # would write, without its per-character encoder (2x less broker CPU).
            body = data
            for raw, escaped in _ESCAPES:
                body = body.replace(raw, escaped)
            t = repr(round(time.monotonic() - self._start, 6)).encode()
            self.sink.write(b"[" + t + b', "o", "' + body + b'"]\n')
            return
        self._event("o", self._out.decode(data))

    def input(self, data: bytes) -> None:
        self._event("i", self._in.decode(data))

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def marker(self, label: str) -> None:
        self._event("m", label)

    def _flush_decoders(self) -> None:
        try:
            self._event("o", self._out.decode(b"", final=True))
            self._event("i", self._in.decode(b"", final=True))
        except OSError:
            pass  # failed or closed: the file is what it is

    def close(self) -> str:
        """Flush the decoders, close the file; returns the sha256 to seal."""
        self._flush_decoders()
        return self.sink.close().sha256

    async def aclose(self) -> Seal:
        self._flush_decoders()
        return await self.sink.aclose()


SUFFIX = ".cast"


def open_recorder(path: Path, *, cols: int, rows: int, title: str) -> CastWriter:
    return CastWriter(path, cols, rows, title=title)
