"""What every recorder shares: a file written by its own thread, failing closed.

The event loop never waits for the disk. A recorder encodes an event and hands
the bytes to a :class:`FileSink`; one writer thread per process (not one per
recording: starting a thread would block the loop, and a broker may hold
thousands of channels) appends them to the file and hashes exactly what
reached it. The hand-over happens once per turn of the
event loop (``call_soon``), after the frame that was recorded has been
forwarded: waking the writer thread never sits on a keystroke's echo path, and
a burst of frames wakes it once. The relay may run at most
:data:`AHEAD_LIMIT` bytes ahead of the disk: past that it awaits
:meth:`FileSink.drained` before forwarding more (back-pressure, so a slow disk
slows the channel instead of growing memory). When a write fails the sink
stops writing, keeps the file as it is, and reports the failure; the seal
then covers exactly the bytes on disk, and the channel is closed.

The header is written synchronously when the recording opens: no recording,
no channel.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

#: how far (bytes) forwarding may run ahead of what the recording has written
AHEAD_LIMIT = 256 * 1024


@dataclass(frozen=True)
class Seal:
    """A closed recording: the sha256 and size of exactly the bytes on disk."""

    sha256: str
    bytes: int
    #: the write error that ended it early ("" when complete)
    error: str = ""


@dataclass(frozen=True)
class Companion:
    """A file a recorder wrote beside its recording, sealed into the log with it."""

    path: Path
    kind: str  # what the sealing event calls it (e.g. "hidden-input")
    seal: Seal


class RecordingFailed(OSError):
    """A write to the recording failed earlier; nothing more is accepted."""


class _Writer:
    """The one thread that writes every recording of this process, in order per file."""

    def __init__(self) -> None:
        self._q: queue.SimpleQueue[tuple[FileSink, bytes | None]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread (once; the broker does it at start-up, not on a first channel)."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="recordings",
                                                daemon=True)
                self._thread.start()

    def submit(self, sink: FileSink, data: bytes | None) -> None:
        """``data`` for the file, or None: the sink is closing (its ``_done`` is set)."""
        if self._thread is None:
            self.start()
        self._q.put((sink, data))

    def _run(self) -> None:
        while True:
            sink, data = self._q.get()
            sink._consume(data)


_WRITER = _Writer()
start_writer = _WRITER.start


class FileSink:
    def __init__(self, path: Path, header: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = path
        self._f = open(path, "xb", buffering=0)  # noqa: SIM115 - closed in close()
        self._sha = hashlib.sha256()
        self.size = 0  # bytes on disk
        self._queued = 0  # bytes handed to the writer
        self.error: OSError | None = None
        self._seal: Seal | None = None
        self._done = threading.Event()  # the writer has handled everything before close
        self._cond = threading.Condition()
        self._batch: list[bytes] = []  # written this turn of the loop, not handed over yet
        self._handing_over = False
        self._loop_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        try:
            self._write(header)
        except BaseException:
            self._f.close()  # a recording that cannot start leaves nothing behind
            path.unlink(missing_ok=True)
            raise
        self._queued = self.size
        #: called on the writer thread once, when a write fails
        self.on_failure: Callable[[OSError], None] | None = None

    # --- the event loop's side ----------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue bytes for the file; never blocks. Raises once a write has failed."""
        if self.error is not None:
            raise RecordingFailed(self.error.errno, f"recording failed: {self.error.strerror}")
        if self._seal is not None:
            raise RecordingFailed("recording closed")
        with self._cond:
            self._queued += len(data)
            self._batch.append(data)
            if self._handing_over:
                return
            self._handing_over = True
        try:
            asyncio.get_running_loop().call_soon(self._hand_over)
        except RuntimeError:  # no event loop (a command-line tool, a test): at once
            self._hand_over()

    def _hand_over(self) -> None:
        with self._cond:
            batch, self._batch = self._batch, []
            self._handing_over = False
        if batch:
            _WRITER.submit(self, b"".join(batch) if len(batch) > 1 else batch[0])

    @property
    def backlog(self) -> int:
        """Bytes queued but not yet on disk."""
        with self._cond:
            return self._queued - self.size

    async def drained(self) -> None:
        """Return once at most :data:`AHEAD_LIMIT` bytes wait for the disk (or it failed)."""
        loop = asyncio.get_running_loop()
        with self._cond:
            if self._queued - self.size <= AHEAD_LIMIT or self.error is not None:
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._loop_waiters.append((loop, fut))
        await fut

    def close(self) -> Seal:
        """Write what is queued, fsync, close; the seal of exactly what is on disk."""
        if self._seal is None:
            self._hand_over()
            _WRITER.submit(self, None)
            self._done.wait()
            try:
                if self.error is None:
                    os.fsync(self._f.fileno())
            except OSError:
                pass  # the file is what it is; its hash is sealed as such
            finally:
                self._f.close()
            err = "" if self.error is None else (self.error.strerror or str(self.error))
            self._seal = Seal(self._sha.hexdigest(), self.size, err)
        return self._seal

    async def aclose(self) -> Seal:
        """:meth:`close` without blocking the event loop (the fsync can take a while)."""
        if self._seal is not None:
            return self._seal
        self._hand_over()
        return await asyncio.get_running_loop().run_in_executor(None, self.close)

    # --- the writer thread ----------------------------------------------------

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:  # unbuffered: ENOSPC / EIO surface here, at once
            n = self._f.write(view)
            if not n:
                raise OSError("recording write made no progress")
            self._sha.update(view[:n])  # hash exactly what reached the file
            with self._cond:
                self.size += n
            view = view[n:]

    def _consume(self, data: bytes | None) -> None:
        """On the writer thread: append ``data``, or (None) finish."""
        if data is None:
            self._wake(everyone=True)
            self._done.set()
            return
        if self.error is not None:
            return  # failed: nothing more reaches the file
        try:
            self._write(data)
        except OSError as exc:
            self.fail(exc)
        self._wake()

    def fail(self, exc: OSError) -> None:
        """On the writer thread: this file (or one it depends on) failed a write.

        A companion file (the sealed hidden input beside a recording) points its
        ``on_failure`` here, so either failing fails the recording as a whole."""
        if self.error is not None:
            return
        self.error = exc
        if self.on_failure is not None:
            self.on_failure(exc)
        self._wake()

    def _wake(self, everyone: bool = False) -> None:
        with self._cond:
            ready = everyone or self.error is not None or (
                self._queued - self.size <= AHEAD_LIMIT)
            if not ready or not self._loop_waiters:
                return
            waiters, self._loop_waiters = self._loop_waiters, []
        for loop, fut in waiters:
            loop.call_soon_threadsafe(_resolve, fut)


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
