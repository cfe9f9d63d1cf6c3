"""Data channels: the pump (two ends, back-pressure, fail closed) and one codec per kind.

``<kind>.py`` holds the kind's :class:`~.pump.Codec` (named ``Codec``), found
by the kind's name in the channel-kind table (``protocol/channels.py``).
"""

from __future__ import annotations

import importlib

from ..recording import Recorder
from .pump import Codec


def codec_for(kind: str, recorder: Recorder, *, scrollback: int) -> Codec:
    module = importlib.import_module(f"{__name__}.{kind}")
    codec: Codec = module.Codec(recorder, scrollback=scrollback)
    return codec
