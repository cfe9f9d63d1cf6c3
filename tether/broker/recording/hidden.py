"""Input typed while the customer's terminal hides it (a password prompt, ``read -s``).

It never reaches the readable recording. What does:

* always, a marker ``hidden input (N bytes)`` in the recording for each run
  (one line typed, or everything until echo comes back), so the record shows
  that something was typed, how much and when;
* with ``serve --reveal-key FILE``, the input itself, sealed to that public
  key (:mod:`tether.protocol.sealed`), in ``<channel>.hidden.jsonl`` beside
  the recording. Its sha256 is sealed into the log like the recording's, so
  ``audit verify`` and bundles cover it; ``audit reveal`` opens it offline.

The file is written by the recordings' writer thread; if a write fails the
recording as a whole fails (fail closed: the channel closes).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from ...protocol import sealed
from ...protocol.terminal import HiddenRuns, hidden_label
from .base import FileSink, Seal

SUFFIX = ".hidden.jsonl"
KIND = sealed.KIND


def hidden_path(recording: Path) -> Path:
    """``recordings/S/C.cast`` -> ``recordings/S/C.hidden.jsonl``."""
    return recording.with_name(recording.name.rsplit(".", 1)[0] + SUFFIX)


class HiddenInput:
    """Counts each run of hidden input; seals it to the reveal key if there is one."""

    def __init__(self, marker: Callable[[str], None], clock: Callable[[], float], *,
                 path: Path, channel: str, started_us: int,
                 reveal_to: X25519PublicKey | None) -> None:
        self._marker = marker
        self._clock = clock  # seconds since the recording's time zero
        self._runs = HiddenRuns()
        self._n = 0
        self._channel = channel
        self._to = reveal_to
        self.path = path
        self.sink: FileSink | None = None
        self.seal: Seal | None = None
        if reveal_to is not None:
            self.sink = FileSink(path, sealed.file_header(sealed.key_id(reveal_to), channel,
                                                          started_us))

    def add(self, data: bytes) -> None:
        """A frame of input typed while echo is off; a line end ends the run."""
        if not data:
            return
        if self.sink is not None and self._to is not None:
            us = int(self._clock() * 1_000_000)
            self.sink.write(sealed.record_line(self._to, self._channel, self._n,
                                               self._runs.count, us, data))
            self._n += 1
        self._mark(self._runs.add(data))

    def end_run(self) -> None:
        """Echo is back (or the channel ends): mark the run in the recording."""
        self._mark(self._runs.end())

    def _mark(self, size: int | None) -> None:
        if size is not None:
            self._marker(hidden_label(size))

    async def aclose(self) -> Seal | None:
        if self.sink is not None and self.seal is None:
            self.seal = await self.sink.aclose()
        return self.seal

    def close(self) -> None:
        if self.sink is not None and self.seal is None:
            self.seal = self.sink.close()
