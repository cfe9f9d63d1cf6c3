"""Bound what a shell's output may ask of a viewer's terminal emulator.

The customer's machine is untrusted on the technician's side: one
``printf 'X\\033[2147483647b'`` (repeat the last character two billion
times) makes xterm.js allocate gigabytes and freezes the tab, and the broker
replays recent output to every viewer that (re)attaches. :class:`VtFilter`
sits between the shell's output and every terminal that draws it (the live
view, the replay, the recording player, the SSH front door to come): it
passes text and sequences through, rebuilt so that no parameter can make an
emulator allocate or loop without bound.

* Every numeric CSI parameter is clamped to :data:`COUNT_MAX` (1000, the
  largest screen :func:`.terminal.clamp` allows): repeat (REP), insert and
  delete characters, erase, tabs, cursor moves, scroll regions, rectangle
  operations. On a screen of at most 1000 columns and rows a larger count
  does nothing more, except REP, whose repeats wrap onto the next lines: there
  the live view shows at most 1000 (the recording keeps the count as sent). Scrolling and
  inserting or deleting lines (``S T L M ^``), which xterm.js does one line
  at a time, are clamped to the screen's rows (:meth:`VtFilter.resize`):
  the screen ends up the same.
  A parameter that names a mode (``h``/``l``, DECRQM, XTSAVE/XTRESTORE) is a
  name, not a count: clamped to :data:`NAME_MAX`.
* Window operations (``CSI … t``) that resize, move or report are dropped;
  only the title stack (22/23) passes.
* A CSI with more than :data:`PARAMS_MAX` numbers or :data:`CSI_MAX`
  characters, and an OSC/DCS/SOS/PM/APC string longer than
  :data:`STRING_MAX`, is dropped whole.
* 8-bit introducers (U+009B CSI, U+009D OSC, U+0090 DCS, …), which xterm.js
  honours like their ``ESC`` forms, are handled the same way and written in
  the 7-bit form. A C0 control inside a sequence (which emulators execute
  in place and then go on collecting parameters) is written before the
  rebuilt sequence, so nothing can hide a parameter from this filter.

The output never carries a sequence the filter did not rebuild: text has no
introducer left in it. A sequence split across chunks is held (at most
:data:`STRING_MAX` characters), so the output does not depend on how the
input was cut; what is held when the stream ends is dropped. Output is valid
UTF-8 (malformed input becomes U+FFFD) and at most three bytes per input byte.
"""

from __future__ import annotations

import codecs
import re

#: the largest count or position passed on (``terminal.MAX_SIZE``: the largest screen)
COUNT_MAX = 1000
#: the largest mode number passed on (modes are names; the highest in use is ~9001)
NAME_MAX = 65535
#: numbers in one CSI (xterm.js keeps 32 too)
PARAMS_MAX = 32
#: characters between a CSI introducer and its final byte
CSI_MAX = 256
#: characters in an OSC, DCS, SOS, PM or APC string (titles, links, palette settings)
STRING_MAX = 4096

# A sequence that needs no rebuilding: a CSI with at most 31 characters of numbers,
# none of them over 3 digits, at most one intermediate and not a window operation; or
# a short ESC sequence. Copied as it is (colourful output is mostly these); anything
# else that starts with ESC or an 8-bit introducer goes through the rebuilding.
_AS_IS = (r"\[[<=>?]?[0-9;:]{0,31}[\x20-\x2f]?"
          r"[\x40-\x4b\x4e-\x52\x55-\x5d\x5f-\x73\x75-\x7e]"  # not S T L M ^ t
          r"|[\x20-\x2f][\x30-\x7e]|[\x30-\x4f\x51-\x57\x59\x5a\x5c\x60-\x7e]")
_REBUILD = f"\x1b(?!{_AS_IS})|\x1b(?=\\[[<=>?]?[0-9;:]*[0-9]{{4}})"
_INTRO = re.compile(f"[\x90\x98\x9b\x9d\x9e\x9f]|{_REBUILD}")
_INTRO_ASCII = re.compile(_REBUILD.encode())  # the same, for ASCII bytes
# C0 controls an emulator executes inside a sequence (CAN, SUB and ESC end it), and DEL
_INNER_C0 = "\x00-\x17\x19\x1c-\x1f\x7f"
_C0 = re.compile(f"[{_INNER_C0}]")
_ESC_C0 = re.compile(f"[{_INNER_C0}]{{0,65}}")
_ESC_REST = re.compile(f"[\x20-\x2f{_INNER_C0}]{{0,64}}")
_CSI_BODY = re.compile(f"[\x20-\x3f{_INNER_C0}]{{0,{CSI_MAX + 1}}}")
_CSI_SKIP = re.compile(f"[\x20-\x3f{_INNER_C0}]*")
_CSI_PARTS = re.compile(r"([<=>?]?)([0-9:;]*)([\x20-\x2f]*)\Z")
_NUMBER = re.compile(r"[0-9]+")
_BIG = re.compile(r"[0-9]{4}")
# a string's body ends at BEL (OSC only), ESC, CAN, SUB or any C1 control
_OSC_BODY = re.compile(f"[^\x07\x18\x1a\x1b\x80-\x9f]{{0,{STRING_MAX + 1}}}")
_STR_BODY = re.compile(f"[^\x18\x1a\x1b\x80-\x9f]{{0,{STRING_MAX + 1}}}")
_OSC_SKIP = re.compile("[^\x07\x18\x1a\x1b\x80-\x9f]*")
_STR_SKIP = re.compile("[^\x18\x1a\x1b\x80-\x9f]*")
#: the 7-bit introducer of each string kind, by its 8-bit form or its ESC letter
_STRINGS = {"\x90": "P", "\x98": "X", "\x9d": "]", "\x9e": "^", "\x9f": "_",
            "P": "P", "X": "X", "]": "]", "^": "^", "_": "_"}


#: scroll up/down, insert/delete lines: xterm.js moves lines once per count, so these are
#: clamped to the screen's rows (a larger count leaves the same screen)
_LINE_OPS = frozenset("STLM^")


def _limit(prefix: str, params: str, inter: str, final: str, rows: int) -> int | None:
    """The largest number a CSI may carry, or None to drop it."""
    if final in _LINE_OPS and not prefix and not inter:
        return rows
    if final == "t" and not prefix and not inter:  # window operations
        first = params.split(";", 1)[0]
        return COUNT_MAX if first in ("22", "23") else None  # only the title stack
    if final in "hl" or (inter == "$" and final == "p") or (prefix == "?" and final in "sr"):
        return NAME_MAX
    return COUNT_MAX


def _csi(body: str, final: str, rows: int) -> str:
    """A complete CSI, rebuilt within bounds (with the C0 controls it carried first)."""
    c0 = ""
    if _C0.search(body):
        c0 = "".join(_C0.findall(body)).replace("\x7f", "")  # DEL is ignored in a CSI
        body = _C0.sub("", body)
    parts = _CSI_PARTS.match(body)
    if parts is None:
        return c0  # malformed: an emulator ignores it too
    prefix, params, inter = parts.groups()
    if params.count(";") + params.count(":") >= PARAMS_MAX:
        return c0
    limit = _limit(prefix, params, inter, final, rows)
    if limit is None:
        return c0
    if _BIG.search(params) or (limit < COUNT_MAX and params):
        params = _NUMBER.sub(lambda m: str(min(int(m.group()), limit)), params)
    return f"{c0}\x1b[{prefix}{params}{inter}{final}"


class VtFilter:
    """Incremental bounds for terminal output: bytes in, bytes out (sans-I/O)."""

    def __init__(self, rows: int = COUNT_MAX) -> None:
        self.rows = rows  # of the screen the output is drawn on (see resize)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._held = ""  # the start of a sequence cut off by the end of a chunk
        self._skip = ""  # the kind of over-long sequence being dropped ("[", "]", "P")

    def resize(self, rows: int) -> None:
        """The screen now has ``rows`` rows (clamped to 1..COUNT_MAX)."""
        self.rows = max(1, min(rows, COUNT_MAX))

    @property
    def idle(self) -> bool:
        """Nothing is held: text with no ESC and no C1 control would pass unchanged."""
        return not self._held and not self._skip and not self._decoder.getstate()[0]

    def feed(self, data: bytes) -> bytes:
        if data.isascii() and self.idle and (b"\x1b" not in data
                                             or not _INTRO_ASCII.search(data)):
            return data  # the common case: text and sequences that need no rebuilding
        text = self._held + self._decoder.decode(data)
        self._held = ""
        return self._scan(text).encode()

    def _scan(self, text: str) -> str:
        out: list[str] = []
        pos, end = 0, len(text)
        if self._skip:
            pos = self._skipped(text, 0)
        while pos < end:
            found = _INTRO.search(text, pos)
            if found is None:
                out.append(text[pos:])
                break
            out.append(text[pos:found.start()])
            piece, pos = self._sequence(text, found.start())
            out.append(piece)
        return "".join(out)

    def _hold(self, text: str, start: int) -> tuple[str, int]:
        self._held = text[start:]
        return "", len(text)

    def _sequence(self, text: str, start: int) -> tuple[str, int]:
        """What to write for the sequence at ``start`` and where to go on."""
        intro = text[start]
        if intro == "\x9b":
            return self._csi(text, start, start + 1)
        if intro != "\x1b":
            return self._string(text, start, start + 1, _STRINGS[intro])
        # ESC: C0 controls right after it are executed and the sequence goes on
        c0 = _ESC_C0.match(text, start + 1)
        assert c0 is not None
        at = c0.end()
        if at - start > 65:  # more controls than any real output puts there: ESC dropped
            return _strip(c0.group()), at
        if at == len(text):
            return self._hold(text, start)
        nxt, pre = text[at], _strip(c0.group())
        if nxt == "[" or nxt in _STRINGS:
            piece, pos = (self._csi(text, start, at + 1) if nxt == "[" else
                          self._string(text, start, at + 1, _STRINGS[nxt]))
            # held whole (from the ESC) when cut off; else the C0 controls go first
            held = len(self._held) == len(text) - start
            return (piece, pos) if held else (pre + piece, pos)
        if "\x20" <= nxt <= "\x7e":  # ESC, intermediates, a final byte
            rest = _ESC_REST.match(text, at)
            assert rest is not None
            stop = rest.end()
            if stop == len(text) and stop - at <= 64:
                return self._hold(text, start)
            if stop < len(text) and "\x30" <= text[stop] <= "\x7e":
                inter = rest.group()
                return (pre + _strip(inter) + "\x1b" + _C0.sub("", inter) + text[stop],
                        stop + 1)
            return pre + _strip(rest.group()), stop  # broken off: dropped
        return pre, at  # ESC broken off by ESC, CAN, SUB or a C1 control: dropped

    def _csi(self, text: str, start: int, body: int) -> tuple[str, int]:
        found = _CSI_BODY.match(text, body)
        assert found is not None
        stop = found.end()
        if stop - body > CSI_MAX:  # over-long: dropped whole, to its final byte
            self._skip = "["
            return "", self._skipped(text, stop)
        if stop == len(text):
            return self._hold(text, start)
        final = text[stop]
        if "\x40" <= final <= "\x7e":
            return _csi(found.group(), final, self.rows), stop + 1
        return _strip(found.group()), stop  # broken off (ESC, CAN, SUB, C1 or non-ASCII)

    def _string(self, text: str, start: int, body: int, kind: str) -> tuple[str, int]:
        osc = kind == "]"
        found = (_OSC_BODY if osc else _STR_BODY).match(text, body)
        assert found is not None
        stop = found.end()
        if stop - body > STRING_MAX:
            self._skip = "]" if osc else "P"
            return "", self._skipped(text, stop)
        if stop == len(text):
            return self._hold(text, start)
        term = text[stop]
        if term == "\x07":
            return f"\x1b]{found.group()}\x07", stop + 1
        if term == "\x9c":
            return f"\x1b{kind}{found.group()}\x1b\\", stop + 1
        if term == "\x1b":
            if stop + 1 == len(text):
                return self._hold(text, start)
            if text[stop + 1] == "\\":
                return f"\x1b{kind}{found.group()}\x1b\\", stop + 2
        return "", stop  # broken off: dropped

    def _skipped(self, text: str, pos: int) -> int:
        """Where the over-long sequence being dropped ends (the whole text if not here)."""
        kind = self._skip
        found = (_CSI_SKIP if kind == "[" else _OSC_SKIP if kind == "]" else _STR_SKIP
                 ).match(text, pos)
        assert found is not None
        stop = found.end()
        if stop == len(text):
            return stop
        self._skip = ""
        term = text[stop]
        if kind == "[":
            return stop + 1 if "\x40" <= term <= "\x7e" else stop
        if term in "\x07\x9c":
            return stop + 1
        if term == "\x1b":
            if stop + 1 == len(text):  # ESC at the end: an ST may be cut in two
                self._skip = kind
                self._held = "\x1b"
                return len(text)
            return stop + 2 if text[stop + 1] == "\\" else stop
        return stop


def _strip(inner: str) -> str:
    """The C0 controls a broken-off sequence carried (executed where they stood)."""
    return "".join(_C0.findall(inner)).replace("\x7f", "")
