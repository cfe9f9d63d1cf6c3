"""Make untrusted text safe to show a person.

Two uses, both on the customer's side (everything the broker sends is
untrusted there) and for logs on the broker:

* :func:`clean_text` for one-line strings (a technician's name, a reason):
  every control character and every bidi override is removed, because a
  forged name like ``"Alice\\x1b[2K\\rBank IT"`` or a right-to-left override
  could make a prompt say something it does not.
* :class:`WatchFilter` for the live copy of a shell's output that the
  customer watches. Only printable text, CR, LF, TAB, BS and SGR colour
  sequences pass. OSC (titles, clipboard writes, hyperlinks), DCS, cursor
  movement and terminal queries are dropped: they could overwrite the
  "session active" indicator, write the customer's clipboard, or make the
  customer's terminal answer a query that would be read as input by the
  consent prompt.
"""

from __future__ import annotations

import codecs
import re

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
#: characters removed from one-line display strings (the console's JS uses the same class,
#: exported by :mod:`.vocabulary`): controls, line separators, bidi overrides
CONTROL_LINE_CLASS = f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}]"
_CONTROL_LINE = re.compile(CONTROL_LINE_CLASS)
# In terminal output CR, LF, TAB and BS are kept; ESC is handled separately.
_CONTROL_TERM = re.compile(f"[\x00-\x07\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f-\x9f{_BIDI}]")

_COMPLETE = (
    r"\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"  # CSI
    r"|\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC … BEL or ST
    r"|[PX^_][^\x1b]*\x1b\\"  # DCS, SOS, PM, APC … ST
)
_PARTIAL = (  # a sequence cut off by the end of the chunk: held for the next one
    r"\[[\x30-\x3f]*[\x20-\x2f]*\Z"
    r"|\][^\x07\x1b]*\x1b?\Z"
    r"|[PX^_][^\x1b]*\x1b?\Z"
    r"|[\x20-\x2f]*\Z"
)
_OTHER = r"[\x20-\x2f]*[\x30-\x7e]"
# the empty last alternative swallows a lone ESC
_SEQUENCE = re.compile(f"\x1b(?:(?P<c>{_COMPLETE})|(?P<p>{_PARTIAL})|{_OTHER}|)")
_SGR = re.compile(r"\x1b\[[0-9;:]*m\Z")
_HOLD_LIMIT = 4096
#: bytes that pass unchanged: printable ASCII, CR, LF, TAB, BS
_PLAIN = bytes(range(0x20, 0x7F)) + b"\r\n\t\x08"
#: where an over-long sequence that is being skipped ends, by its kind
_SKIP_END = {
    "]": re.compile("\x07|\x1b\\\\"),  # OSC: BEL or ST
    "P": re.compile("\x1b\\\\"),  # DCS, SOS, PM, APC: ST only (BEL is content)
    "[": re.compile("[\x40-\x7e]|(?=[^\x20-\x3f])"),  # CSI: its final byte
    "": re.compile("[\x30-\x7e]|(?=[^\x20-\x2f])"),  # ESC + intermediates: final byte
}


def clean_text(text: str, limit: int = 200) -> str:
    """One line of untrusted text, safe to print: no escapes, controls or bidi."""
    return _CONTROL_LINE.sub("", _SEQUENCE.sub("", text))[:limit]


class WatchFilter:
    """Incremental allowlist filter for terminal output (bytes in, bytes out).

    Holds back an escape sequence or a UTF-8 character that is split across
    chunks, so a split never lets part of a sequence through. A sequence
    longer than the hold limit is skipped to its end instead (a large
    clipboard write never leaks as text), and one that long is dropped also
    when it arrives whole, so the output never depends on how reads split.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""
        self._skipping: str | None = None  # the kind of sequence being skipped

    def feed(self, data: bytes) -> bytes:
        if not self._held and self._skipping is None and not data.translate(None, _PLAIN):
            if not self._decoder.getstate()[0]:  # no half character waiting
                return data  # the common case in a flood: printable ASCII lines
        text = self._held + self._decoder.decode(data)
        self._held = ""
        if self._skipping is not None:
            text = self._skip(text, self._skipping)
        if "\x1b" in text:
            text = _SEQUENCE.sub(self._replace, text)
        return _CONTROL_TERM.sub("", text).encode()

    def _skip(self, text: str, kind: str) -> str:
        """Drop the rest of an over-long sequence, up to its end."""
        end = _SKIP_END[kind].search(text)
        if end is None:
            string = kind in ("]", "P")
            self._held = "\x1b" if string and text.endswith("\x1b") else ""  # half an ST?
            return ""
        self._skipping = None
        return text[end.end():]

    def _replace(self, match: re.Match[str]) -> str:
        seq = match.group(0)
        if match.group("p") is not None:
            if len(seq) < _HOLD_LIMIT:
                self._held = seq
            else:
                kind = seq[1:2]
                self._skipping = "P" if kind in ("P", "X", "^", "_") else (
                    kind if kind in ("]", "[") else "")
                string = self._skipping in ("]", "P")
                self._held = "\x1b" if string and seq.endswith("\x1b") else ""
            return ""
        return seq if len(seq) < _HOLD_LIMIT and _SGR.match(seq) else ""
