"""Every vocabulary the console shares with Python, exported from one source.

Labels of states, the channel kinds and capabilities (with their buttons),
close codes, the terminal controls and the control-character class: the
templates get :func:`export` as a Jinja global, and ``hatch_build.py`` writes
:func:`strings_js` to ``static/strings.js`` for the page scripts. Nothing
here is typed twice.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any

from . import channels, consent, states, terminal
from .errors import Close
from .sanitize import CONTROL_LINE_CLASS

_CONTROLS: frozenset[type[terminal.Control]] = (
    terminal.TO_CLIENT | terminal.FROM_CLIENT | terminal.TO_VIEWER | terminal.FROM_VIEWER)


def _class_members(char_class: str) -> str:
    """Every character of a regex class written as literal characters and ranges.

    The templates have no regular expressions, so they get the characters
    themselves (``controlCharList``); a test checks this against the regex.
    """
    body, i = char_class[1:-1], 0
    out: list[str] = []
    while i < len(body):
        if i + 2 < len(body) and body[i + 1] == "-":
            out.extend(chr(c) for c in range(ord(body[i]), ord(body[i + 2]) + 1))
            i += 3
        else:
            out.append(body[i])
            i += 1
    return "".join(out)


def _names(enum: type[StrEnum]) -> dict[str, str]:
    return {m.name: m.value for m in enum}


#: what the console says when a viewer's socket closes with a code and no reason
#: (1001 and 1006 are never sent by Tether: the server going away, a dropped line)
VIEWER_CLOSE_TEXT: dict[int, str] = {
    Close.NORMAL: "the shell ended",
    1001: "the broker is going away",
    1006: "the connection to the broker was lost",
    Close.TOO_BIG: "a message was too big",
    Close.INTERNAL: "the broker could not record the shell",
    Close.AUTH: "the viewer secret was refused (already used or expired)",
    Close.FORBIDDEN: "not allowed (sign in again)",
    Close.TIMEOUT: "the customer's client did not connect in time",
    Close.CONFLICT: "another page is attached to this shell",
}


def export() -> dict[str, Any]:
    # the available kind each capability opens (None: it opens no channel)
    _opens = {k.opens: k.name for k in channels.KINDS.values() if k.available}
    return {
        "states": {
            "session": _names(states.SessionState),
            "channel": _names(states.ChannelState),
            "consent": _names(states.Consent),
        },
        "sessionLabels": dict(states.SESSION_LABELS),
        "channelLabels": dict(states.CHANNEL_LABELS),
        "consentLabels": dict(states.CONSENT_LABELS),
        "channelFinal": sorted(states.CHANNEL_FINAL),
        "channelAttachable": sorted(states.CHANNEL_ATTACHABLE),
        "kinds": {
            k.name: {"opens": k.opens, "adds": list(k.adds), "label": channels.CAPABILITIES[
                k.opens].label, "maxFrame": k.max_frame}
            for k in channels.KINDS.values() if k.available
        },
        "capabilities": {c.name: {"label": c.label, "withdrawable": c.withdrawable,
                                  "opens": _opens.get(c.name)}
                         for c in channels.CAPABILITIES.values()},
        "close": {c.name: int(c) for c in Close},
        "viewerCloseText": {str(int(code)): text for code, text in VIEWER_CLOSE_TEXT.items()},
        "terminal": {
            "minSize": terminal.MIN_SIZE,
            "maxSize": terminal.MAX_SIZE,
            # the text-frame controls by class name: {"RESIZE": "resize", ...}
            "controls": {cls.__name__.upper(): cls.type for cls in sorted(
                _CONTROLS, key=lambda c: c.type)},
        },
        "maxRefusals": consent.MAX_REFUSALS,
        "controlChars": CONTROL_LINE_CLASS,
        "controlCharList": _class_members(CONTROL_LINE_CLASS),
    }


def strings_js() -> str:
    """The ES module the page scripts import (``/static/strings.js``)."""
    body = json.dumps(export(), indent=2, sort_keys=True, ensure_ascii=True)
    return ("// Generated from tether/protocol/vocabulary.py by hatch_build.py: do not edit.\n"
            f"export const VOCAB = Object.freeze({body});\n"
            # 'u': the class holds characters beyond U+FFFF (tags), one code point each
            "export const CONTROL_CHARS = new RegExp(VOCAB.controlChars, 'gu');\n")
