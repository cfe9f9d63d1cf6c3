"""Make untrusted text safe to show a person.

Two uses, both on the customer's side (everything the broker sends is
untrusted there) and for logs on the broker:

* :func:`clean_text` for one-line strings (a technician's name, a reason):
  every control character, every bidi override and every invisible character
  is removed, because a forged name like ``"Alice\\x1b[2K\\rBank IT"``, a
  right-to-left override or a zero-width space (``"adm\\u200bin"``) could make
  a prompt say something it does not.
* :class:`WatchFilter` for the live copy of a shell's output that the
  customer watches. Only printable text, CR, LF, TAB, BS and SGR colour
  sequences pass, the latter rewritten by :func:`visible_sgr` so that no text
  can be concealed, dimmed or drawn in the colour of its background (a
  technician's ``PS1='\\[\\e[8m\\]'`` would otherwise hide every command). OSC
  (titles, clipboard writes, hyperlinks), DCS, cursor movement and terminal
  queries are dropped: they could overwrite the "session active" indicator,
  write the customer's clipboard, or make the customer's terminal answer a
  query that would be read as input by the consent prompt.
"""

from __future__ import annotations

import codecs
import re

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
# Invisible characters that can disguise a name ("adm\u200bin" looks like "admin"):
# Unicode's default-ignorable code points (soft hyphen, combining grapheme joiner,
# Hangul fillers, Khmer inherent vowels, Mongolian vowel separator, zero-width space,
# word joiner and invisible operators, deprecated format controls, BOM, shorthand and
# musical format controls, tag characters) and the interlinear annotation controls.
# Kept: ZWNJ and ZWJ (U+200C/U+200D: Persian, Indic scripts and emoji sequences need
# them) and the variation selectors (U+FE00-FE0F, U+180B-180F, U+E0100-E01EF: emoji
# and ideograph variants).
_INVISIBLE = ("\u00ad\u034f\u115f\u1160\u17b4\u17b5\u180e\u200b\u2060-\u2065\u206a-\u206f"
              "\u3164\ufeff\uffa0\ufff0-\ufffb\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
              "\U000e0000-\U000e007f")
#: characters removed from one-line display strings (the console's JS uses the same class,
#: exported by :mod:`.vocabulary`, with the ``u`` flag): controls, line separators, bidi
#: overrides, invisible characters
CONTROL_LINE_CLASS = f"[\x00-\x1f\x7f-\x9f\u2028\u2029{_BIDI}{_INVISIBLE}]"
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
        if len(seq) < _HOLD_LIMIT and _SGR.match(seq):
            if seq == "\x1b[m":
                return seq
            params = visible_sgr(seq[2:-1])
            return f"\x1b[{params}m" if params else ""
        return ""


# --- colours the customer can always read ---------------------------------------------

#: SGR codes the watch view keeps as they are: reset, bold, italic, underline, their ends,
#: the default foreground
_SGR_KEEP = frozenset({0, 1, 3, 4, 22, 23, 24, 39})
#: the 16 theme colours that may be the customer's background: black, white, the greys
_THEME_GREYS = frozenset({0, 7, 8, 15})
_CUBE = (0, 95, 135, 175, 215, 255)  # xterm's 256-colour cube levels


def _luminance(r: int, g: int, b: int) -> float:
    def lin(c: int) -> float:
        v = c / 255
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b)


def _readable(r: int, g: int, b: int) -> bool:
    """At least 2:1 contrast (WCAG's ratio) on a black and on a white background alike."""
    lum = _luminance(r, g, b)
    return (lum + 0.05) / 0.05 >= 2 and 1.05 / (lum + 0.05) >= 2


def _readable_colour(args: list[str], colon: bool) -> str | None:
    """``38;…``'s colour rewritten canonically if it is readable on any background (see
    :func:`visible_sgr`), else None. The parameters are rebuilt from the parsed numbers,
    never passed as written: ``38;2;256;0;0`` is black to a terminal that keeps the low
    8 bits, so a value out of range is not a colour at all."""
    try:
        if args[:1] == ["5"] and len(args) == 2:
            n = int(args[1] or 0)
            if not 0 <= n <= 255:
                return None
            if n < 16:
                ok = n not in _THEME_GREYS
            elif n < 232:
                c = n - 16
                ok = _readable(_CUBE[c // 36], _CUBE[c // 6 % 6], _CUBE[c % 6])
            else:
                ok = _readable(*(8 + 10 * (n - 232),) * 3)
            return (f"38:5:{n}" if colon else f"38;5;{n}") if ok else None
        if args[:1] == ["2"] and len(args) in (4, 5):  # 38;2;r;g;b or 38:2:space:r:g:b
            r, g, b = (int(x or 0) for x in args[-3:])
            if all(0 <= v <= 255 for v in (r, g, b)) and _readable(r, g, b):
                return f"38:2::{r}:{g}:{b}" if colon else f"38;2;{r};{g};{b}"
    except (ValueError, IndexError):
        pass
    return None


def visible_sgr(params: str) -> str:
    """An SGR's parameters rewritten so that no text it styles can be unreadable.

    The watch view never changes the background (no background colours, no
    reverse video), never hides or dims text (no conceal, no faint, no blink),
    and keeps a foreground colour only if it cannot match the customer's own
    background: the theme's black, white and greys and any exact colour
    (256-palette or RGB) with less than 2:1 contrast on black or on white become
    the terminal's default text colour. What is left: reset, bold, italic,
    underline and readable foreground colours. ``""``: nothing to send.
    """
    fields = params.split(";") if params else ["0"]
    out: list[str] = []
    i = 0
    while i < len(fields):
        sub = fields[i].split(":")
        i += 1
        try:
            code = int(sub[0] or 0)
        except ValueError:
            break
        if code in (38, 48, 58):  # a colour: its arguments follow, after ":" or ";"
            if len(sub) > 1:
                args = sub[1:]
            else:
                n = {"5": 1, "2": 3}.get(fields[i] if i < len(fields) else "", 0)
                args, i = fields[i:i + 1 + n], i + 1 + n
            if code == 38:
                out.append(_readable_colour(args, colon=len(sub) > 1) or "39")
        elif code == 4 and sub[1:2] == ["0"]:
            out.append("24")  # 4:0: no underline
        elif code in _SGR_KEEP:
            out.append(str(code))
        elif 30 <= code <= 37 or 90 <= code <= 97:
            theme = code - 30 if code < 90 else code - 82
            out.append("39" if theme in _THEME_GREYS else str(code))
    return ";".join(out)
