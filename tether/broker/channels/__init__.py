"""Data channels: the pump (two ends, back-pressure, fail closed) and one codec per kind.

``<kind>.py`` holds the kind's :class:`~.pump.Codec` (named ``Codec``), found
by the kind's name in the channel-kind table (``protocol/channels.py``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ...protocol.channels import KINDS
from ..recording import Recorder
from .pump import Codec

#: each available kind's codec class, imported once at start-up (not on a first channel)
_CODECS: dict[str, Any] = {
    k.name: importlib.import_module(f"{__name__}.{k.name}").Codec
    for k in KINDS.values() if k.available
}


def codec_for(kind: str, recorder: Recorder, *, scrollback: int) -> Codec:
    codec: Codec = _CODECS[kind](recorder, scrollback=scrollback)
    return codec
