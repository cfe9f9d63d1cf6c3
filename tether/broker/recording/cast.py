"""asciicast v2 recordings of shell channels, sealed into the audit log.

The file is opened before the channel opens (no recording, no channel). Each
write goes straight to the file so that a full disk shows up at once as an
``OSError`` and the relay closes the channel instead of relaying unrecorded
bytes. Output and input keep their own incremental UTF-8 decoders, so a
character split between two frames is written whole, and the file is always
valid UTF-8 JSON lines.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

#: bytes that need no escaping beyond _ESCAPES: printable ASCII, CR, LF, TAB, BS
_PLAIN = bytes(range(0x20, 0x7F)) + b"\r\n\t\x08"
_ESCAPES = ((b"\\", b"\\\\"), (b'"', b'\\"'), (b"\r", b"\\r"), (b"\n", b"\\n"),
            (b"\t", b"\\t"), (b"\x08", b"\\b"))


class CastWriter:
    def __init__(self, path: Path, cols: int, rows: int, *, title: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._f = open(path, "xb", buffering=0)  # noqa: SIM115 - closed in close()
        self._sha = hashlib.sha256()
        self._start = time.monotonic()
        self.started_us = time.time_ns() // 1000  # time zero of the recording, wall clock
        self._out = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._in = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.size = 0
        self.closed = False
        try:
            self._line(self._header(cols, rows, title))
        except BaseException:
            self._f.close()  # a recording that cannot start leaves nothing behind
            path.unlink(missing_ok=True)
            raise

    @staticmethod
    def _header(cols: int, rows: int, title: str) -> dict[str, Any]:
        return {
            "version": 2,
            "width": cols,
            "height": rows,
            "timestamp": int(time.time()),
            "title": title,
            "env": {"TERM": "xterm-256color"},
        }

    def _line(self, obj: Any) -> None:
        self._write(json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")).encode() + b"\n")

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # unbuffered: ENOSPC / EIO surface here, at once
            n = self._f.write(view)
            if not n:
                raise OSError("recording write made no progress")
            self._sha.update(view[:n])  # hash exactly what reached the file
            self.size += n
            view = view[n:]

    def _event(self, code: str, text: str) -> None:
        if text:
            self._line([round(time.monotonic() - self._start, 6), code, text])

    def output(self, data: bytes) -> None:
        if not data.translate(None, _PLAIN) and not self._out.getstate()[0]:
            # Fast path for floods of printable ASCII: the same bytes json.dumps
            # would write, without its per-character encoder (2x less broker CPU).
            body = data
            for raw, escaped in _ESCAPES:
                body = body.replace(raw, escaped)
            t = repr(round(time.monotonic() - self._start, 6)).encode()
            self._write(b"[" + t + b', "o", "' + body + b'"]\n')
            return
        self._event("o", self._out.decode(data))

    def input(self, data: bytes) -> None:
        self._event("i", self._in.decode(data))

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def marker(self, label: str) -> None:
        self._event("m", label)

    def close(self) -> str:
        """Flush decoders, close the file; returns the sha256 to seal."""
        if not self.closed:
            self.closed = True
            try:
                self._event("o", self._out.decode(b"", final=True))
                self._event("i", self._in.decode(b"", final=True))
                os.fsync(self._f.fileno())
            except OSError:
                pass  # the file is what it is; its hash is sealed as such
            finally:
                self._f.close()
        return self._sha.hexdigest()
