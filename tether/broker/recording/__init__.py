"""Recordings: one module per recorder kind (the channel-kind table names it).

``cast`` records terminals (asciicast v2); ``rfb`` (screens) comes with the
screen channel. :func:`open_recorder` opens the recorder a kind names.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from ...protocol.channels import KINDS
from .base import AHEAD_LIMIT, FileSink, RecordingFailed, Seal, start_writer

__all__ = ["AHEAD_LIMIT", "FileSink", "RecordingFailed", "Recorder", "Seal", "open_recorder",
           "start_writer", "suffix"]


class Recorder(Protocol):
    """What the relay needs of every recorder; kinds add their own event methods."""

    sink: FileSink
    started_us: int

    def marker(self, label: str) -> None: ...

    async def aclose(self) -> Seal: ...


#: the recorder module of each available kind, imported once at start-up
_MODULES: dict[str, Any] = {
    k.recorder: importlib.import_module(f"{__name__}.{k.recorder}")
    for k in KINDS.values() if k.available
}


def suffix(recorder_kind: str) -> str:
    return str(_MODULES[recorder_kind].SUFFIX)


def open_recorder(recorder_kind: str, path: Path, *, cols: int, rows: int,
                  title: str) -> Recorder:
    """Open a new recording of ``recorder_kind`` at ``path`` (raises OSError)."""
    recorder: Recorder = _MODULES[recorder_kind].open_recorder(path, cols=cols, rows=rows,
                                                               title=title)
    return recorder
