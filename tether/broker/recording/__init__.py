"""Recordings: one module per recorder kind (the channel-kind table names it).

``cast`` records terminals (asciicast v2); ``rfb`` (screens) comes with the
screen channel. :func:`open_recorder` opens the recorder a kind names.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Protocol

from .base import AHEAD_LIMIT, FileSink, RecordingFailed, Seal

__all__ = ["AHEAD_LIMIT", "FileSink", "RecordingFailed", "Recorder", "Seal", "open_recorder"]


class Recorder(Protocol):
    """What the relay needs of every recorder; kinds add their own event methods."""

    sink: FileSink
    started_us: int

    def marker(self, label: str) -> None: ...

    async def aclose(self) -> Seal: ...


def suffix(recorder_kind: str) -> str:
    return str(importlib.import_module(f"{__name__}.{recorder_kind}").SUFFIX)


def open_recorder(recorder_kind: str, path: Path, *, cols: int, rows: int,
                  title: str) -> Recorder:
    """Open a new recording of ``recorder_kind`` at ``path`` (raises OSError)."""
    module = importlib.import_module(f"{__name__}.{recorder_kind}")
    recorder: Recorder = module.open_recorder(path, cols=cols, rows=rows, title=title)
    return recorder
