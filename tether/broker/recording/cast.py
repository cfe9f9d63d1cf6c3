"""asciicast v2 recordings of terminal channels, sealed into the audit log.

Events are encoded here, on the caller's thread (cheap), and written by the
:class:`~.base.FileSink`'s own thread. Output and input keep their own
incremental UTF-8 decoders, so a character split between two frames is
written whole, and the file is always valid UTF-8 JSON lines. Input typed
while the customer's terminal hides it goes to :class:`~.hidden.HiddenInput`
instead: a marker here, the input itself only sealed, beside this file.
"""

from __future__ import annotations

import codecs
import json
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from .base import Companion, FileSink, Seal
from .hidden import KIND, HiddenInput, hidden_path

#: bytes that need no escaping beyond _ESCAPES: printable ASCII, CR, LF, TAB, BS
_PLAIN = bytes(range(0x20, 0x7F)) + b"\r\n\t\x08"
_ESCAPES = ((b"\\", b"\\\\"), (b'"', b'\\"'), (b"\r", b"\\r"), (b"\n", b"\\n"),
            (b"\t", b"\\t"), (b"\x08", b"\\b"))


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": ")).encode() + b"\n"


class CastWriter:
    """One terminal channel's recording (the ``cast`` recorder kind)."""

    def __init__(self, path: Path, cols: int, rows: int, *, title: str,
                 reveal_to: X25519PublicKey | None = None) -> None:
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
        try:
            self.hidden = HiddenInput(self.marker, lambda: time.monotonic() - self._start,
                                      path=hidden_path(path), channel=path.stem,
                                      started_us=self.started_us, reveal_to=reveal_to)
        except BaseException:
            self.sink.close()  # no recording without its hidden-input file
            path.unlink(missing_ok=True)
            raise
        if self.hidden.sink is not None:
            self.hidden.sink.on_failure = self.sink.fail  # fail closed as one recording
        #: the other files sealed with this one, once closed
        self.companions: list[Companion] = []

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

    def hidden_input(self, data: bytes) -> None:
        """Input the customer's terminal does not echo: never written here as text."""
        self.hidden.add(data)

    def end_hidden(self) -> None:
        self.hidden.end_run()

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def marker(self, label: str) -> None:
        self._event("m", label)

    def _flush_decoders(self) -> None:
        try:
            self.hidden.end_run()
            self._event("o", self._out.decode(b"", final=True))
            self._event("i", self._in.decode(b"", final=True))
        except OSError:
            pass  # failed or closed: the file is what it is

    def _companions(self) -> None:
        if self.hidden.seal is not None:
            self.companions = [Companion(self.hidden.path, KIND, self.hidden.seal)]

    def close(self) -> str:
        """Flush the decoders, close the files; returns the recording's sha256 to seal."""
        self._flush_decoders()
        seal = self.sink.close()
        self.hidden.close()
        self._companions()
        return seal.sha256

    async def aclose(self) -> Seal:
        self._flush_decoders()
        seal = await self.sink.aclose()
        await self.hidden.aclose()
        self._companions()
        return seal


SUFFIX = ".cast"


def open_recorder(path: Path, *, cols: int, rows: int, title: str,
                  reveal_to: X25519PublicKey | None = None) -> CastWriter:
    return CastWriter(path, cols, rows, title=title, reveal_to=reveal_to)
