"""The recorders' file sink (broker/recording/base.py): writes off the event loop,
back-pressure when the disk falls behind, and an exact seal."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from tether.broker.recording.base import AHEAD_LIMIT, FileSink


class SlowFile:
    """The sink's file, whose writes wait for ``gate`` (a disk that falls behind)."""

    def __init__(self, real: Any, gate: threading.Event) -> None:
        self.real, self.gate = real, gate

    def write(self, data: Any) -> int:
        self.gate.wait(10)
        return int(self.real.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_forwarding_waits_while_the_disk_is_behind(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "s" / "c.bin", b"header\n")
    gate = threading.Event()
    sink._f = SlowFile(sink._f, gate)  # type: ignore[assignment]
    data = b"x" * (AHEAD_LIMIT + 1)
    sink.write(data)  # never blocks the caller
    assert sink.backlog > AHEAD_LIMIT
    waiter = asyncio.ensure_future(sink.drained())
    await asyncio.sleep(0.1)
    assert not waiter.done()  # the relay would stop forwarding here
    gate.set()
    await asyncio.wait_for(waiter, 5)
    assert sink.backlog == 0
    seal = await sink.aclose()
    on_disk = (tmp_path / "s" / "c.bin").read_bytes()
    assert on_disk == b"header\n" + data
    assert seal.sha256 == hashlib.sha256(on_disk).hexdigest() and seal.bytes == len(on_disk)
    assert seal.error == ""


async def test_drained_returns_at_once_when_nothing_waits(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "c.bin", b"h")
    sink.write(b"small")
    await asyncio.wait_for(sink.drained(), 1)
    assert sink.close().bytes == len(b"hsmall")


def test_writes_after_close_are_refused_and_close_is_idempotent(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "c.bin", b"h")
    first = sink.close()
    with pytest.raises(OSError):
        sink.write(b"late")
    assert sink.close() == first
