"""Every vocabulary the console shares with Python, exported from one source.

Labels of states, the channel kinds and capabilities (with their buttons),
close codes, the terminal controls and the control-character class: the
templates get :func:`export` as a Jinja global, and ``hatch_build.py`` writes
:func:`strings_js` to ``static/strings.js`` for the page scripts. Nothing
here is typed twice.
"""

from __future__ import annotations

import json
from typing import Any

from . import channels, consent, states, terminal
from .errors import Close
from .sanitize import CONTROL_LINE_CLASS


def export() -> dict[str, Any]:
    return {
        "sessionLabels": dict(states.SESSION_LABELS),
        "channelLabels": dict(states.CHANNEL_LABELS),
        "consentLabels": dict(states.CONSENT_LABELS),
        "channelFinal": sorted(states.CHANNEL_FINAL),
        "kinds": {
            k.name: {"opens": k.opens, "adds": list(k.adds), "label": channels.CAPABILITIES[
                k.opens].label, "maxFrame": k.max_frame}
            for k in channels.KINDS.values() if k.available
        },
        "capabilities": {c.name: {"label": c.label, "withdrawable": c.withdrawable}
                         for c in channels.CAPABILITIES.values()},
        "close": {c.name: int(c) for c in Close},
        "terminal": {"minSize": terminal.MIN_SIZE, "maxSize": terminal.MAX_SIZE},
        "maxRefusals": consent.MAX_REFUSALS,
        "controlChars": CONTROL_LINE_CLASS,
    }


def strings_js() -> str:
    """The ES module the page scripts import (``/static/strings.js``)."""
    body = json.dumps(export(), indent=2, sort_keys=True, ensure_ascii=True)
    return ("// Generated from tether/protocol/vocabulary.py by hatch_build.py: do not edit.\n"
            f"export const VOCAB = Object.freeze({body});\n"
            "export const CONTROL_CHARS = new RegExp(VOCAB.controlChars, 'g');\n")
