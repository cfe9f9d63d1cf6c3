"""Recordings: one module per recorder kind (the channel-kind table names it).

``cast`` records terminals (asciicast v2); ``rfb`` (screens) comes with the
screen channel. :func:`open_recorder` opens the recorder a kind names.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ...protocol.channels import KINDS
from .base import AHEAD_LIMIT, Companion, FileSink, RecordingFailed, Seal, start_writer

__all__ = ["AHEAD_LIMIT", "Companion", "FileSink", "RecordingFailed", "Recorder", "Seal",
           "open_recorder", "start_writer", "suffix"]


class Recorder(Protocol):
    """What the relay needs of every recorder; kinds add their own event methods."""

    sink: FileSink
    started_us: int
    #: files written beside the recording, sealed with it (filled by ``aclose``)
    companions: list[Companion]

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
                  title: str, reveal_to: X25519PublicKey | None = None) -> Recorder:
    """Open a new recording of ``recorder_kind`` at ``path`` (raises OSError).

    ``reveal_to``: the auditor's public key that input hidden by the customer's
    terminal is sealed to (kinds without typed input ignore it)."""
    recorder: Recorder = _MODULES[recorder_kind].open_recorder(
        path, cols=cols, rows=rows, title=title, reveal_to=reveal_to)
    return recorder
