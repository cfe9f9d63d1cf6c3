"""Pairs the two ends of a channel and pumps frames between them.

An :class:`End` is anything that carries frames: a browser WebSocket, the
client's data WebSocket, an SSH channel. Each end is served by its own task,
which awaits the send to the other end before it reads again, so a slow
viewer slows only its own channel (back-pressure reaches the customer's
process) and never another session. The kind's :class:`Codec` sees every
frame first (records it, filters it, reads its controls); forwarding may run
at most ``recording.AHEAD_LIMIT`` bytes ahead of the recording's disk
writes, and a recording that cannot be written closes the channel.

The pump never changes a state itself: it reports through its :class:`Hooks`
(given by the core), which step the session's machine under the session's
lock. It imports nothing of the core.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ...protocol.errors import AuditUnavailable, Close, ProtocolError
from ...protocol.messages import check_size
from ..auth.rules import User
from ..recording import AHEAD_LIMIT, Recorder

log = logging.getLogger("tether.relay")

Frame = bytes | str
RECORDING_FAILED = "recording failed: channel closed"


class End(Protocol):
    """One end of a channel, as the pump sees it."""

    def frames(self) -> AsyncIterator[Frame]:
        """The frames this end sends, until it closes (a ProtocolError if malformed)."""
        ...

    async def send(self, frame: Frame) -> None:
        """Deliver a frame (raises ConnectionError when the end is gone)."""
        ...

    async def close(self, code: int, reason: str) -> None:
        """Close from another task (the broker ends the channel)."""
        ...

    async def finish(self) -> None:
        """Close from the end's own task when it stops reading, with the code chosen."""
        ...


class Codec(Protocol):
    """One channel kind's view of its frames (``channels/<kind>.py``)."""

    recorder: Recorder

    def from_agent(self, frame: Frame) -> Frame | None:
        """Record and check a frame from the customer's side; what the viewer gets."""
        ...

    def from_viewer(self, frame: Frame) -> Frame | None:
        """Record and check a frame from the technician; what the customer gets."""
        ...

    def replay(self) -> list[Frame]:
        """What a viewer that (re)attaches is sent first."""
        ...

    def closed_frame(self, reason: str) -> Frame | None:
        """The frame telling a viewer why the broker ended the channel."""
        ...

    def agent_gone_reason(self) -> str:
        """Why the channel ends when the customer's side closes its end."""
        ...


@dataclass(frozen=True)
class Hooks:
    """How the pump reports to the core, bound to one channel."""

    #: ``audit(action, actor=..., ip=...)``: an event about this channel, committed
    audit: Callable[..., Awaitable[int]]
    #: True while frames may flow (the channel is open)
    flowing: Callable[[], bool]
    #: both ends are present
    paired: Callable[[], Awaitable[None]]
    #: the viewer left an open channel
    detached: Callable[[User, str], Awaitable[None]]
    #: the channel must end: (actor, reason, failed)
    closed: Callable[[str, str, bool], Awaitable[None]]
    #: the recording failed (called on the event loop; the core closes the channel)
    recording_failed: Callable[[], None]
    #: a frame went through (for the idle timeout)
    activity: Callable[[], None]
    #: log context
    ctx: dict[str, Any]


class Pump:
    def __init__(self, hooks: Hooks, codec: Codec, path: str, *, max_frame: int) -> None:
        self.hooks = hooks
        self.codec = codec
        self.max_frame = max_frame  # the kind's own limit, either direction
        self.recorder = codec.recorder
        self.path = path  # of the recording, relative to the data directory
        self.rec_id = 0
        self.agent: End | None = None
        self.viewer: End | None = None
        self.viewer_user: User | None = None
        loop = asyncio.get_running_loop()

        def on_failure(exc: OSError) -> None:  # on the recorder's writer thread
            loop.call_soon_threadsafe(self._recording_failed)

        self.recorder.sink.on_failure = on_failure

    def marker(self, label: str) -> None:
        """A marker in the recording (fail closed: a write failure is AuditUnavailable)."""
        try:
            self.recorder.marker(label)
        except OSError as exc:
            raise AuditUnavailable(RECORDING_FAILED) from exc

    def _recording_failed(self) -> None:
        """On the loop, once the writer thread has reported a failed write."""
        log.error("recording write failed", extra=self.hooks.ctx)
        self.hooks.recording_failed()

    # --- the customer's end ------------------------------------------------

    async def serve_agent(self, end: End, ip: str) -> None:
        hooks = self.hooks
        reason: tuple[str, str, bool] | None = None  # actor, reason, failed
        try:
            await hooks.audit("channel.agent_connected", actor="client", ip=ip)
            self.agent = end
            await self._maybe_paired()
            async for frame in end.frames():
                out = self._record(self.codec.from_agent, frame)
                hooks.activity()
                viewer = self.viewer if hooks.flowing() else None
                if out is not None and viewer is not None:
                    try:
                        await viewer.send(out)
                    except (ConnectionError, RuntimeError):
                        pass  # the viewer's own handler notices and detaches
                if self.recorder.sink.backlog > AHEAD_LIMIT:
                    await self.recorder.sink.drained()
        except AuditUnavailable as exc:
            reason = ("broker", exc.message, True)
        except ProtocolError as exc:
            reason = ("broker", f"client error: {exc.message}", False)
        finally:
            self.agent = None
            await end.finish()
            if self.recorder.sink.error is not None:
                reason = ("broker", RECORDING_FAILED, True)
            if reason is None:
                reason = ("client", self.codec.agent_gone_reason(), False)
            await hooks.closed(*reason)

    def _record(self, fn: CodecFn, frame: Frame) -> Frame | None:
        check_size(frame, self.max_frame)
        try:
            return fn(frame)
        except OSError as exc:  # the recording failed: nothing unrecorded is forwarded
            raise AuditUnavailable(RECORDING_FAILED) from exc

    # --- the technician's end ----------------------------------------------

    async def serve_viewer(self, end: End, user: User, ip: str) -> None:
        hooks = self.hooks
        if self.viewer is not None:
            await end.close(Close.CONFLICT, "another viewer is attached")
            return
        self.viewer = end  # reserved before any await: a second viewer gets 4409
        self.viewer_user = user
        failed: str | None = None
        try:
            await hooks.audit("channel.viewer_attached", actor=user.name, ip=ip)
            self.marker(f"viewer attached: {user.display_name}")
            await self._maybe_paired()
            for frame in self.codec.replay():
                await end.send(frame)
            async for frame in end.frames():
                if not (hooks.flowing() and self.agent is not None and self.viewer is end):
                    continue  # only the attached viewer of an open channel reaches the PTY
                out = self._record(self.codec.from_viewer, frame)
                hooks.activity()
                agent = self.agent
                if out is not None and agent is not None:
                    await agent.send(out)
        except AuditUnavailable as exc:
            failed = exc.message
        except ProtocolError as exc:
            await end.close(exc.close_code, exc.message)
        except ConnectionError:
            pass  # the viewer went away mid-send: a detach like any other
        finally:
            if self.viewer is end:
                self.viewer = None
                self.viewer_user = None
            await end.finish()
            if failed is not None or self.recorder.sink.error is not None:
                await hooks.closed("broker", failed or RECORDING_FAILED, True)
            elif hooks.flowing() and self.viewer is None:
                await hooks.detached(user, ip)

    # --- both ----------------------------------------------------------------

    async def _maybe_paired(self) -> None:
        if self.agent is not None and self.viewer is not None:
            await self.hooks.paired()

    async def shutdown(self, reason: str, *, failed: bool = False) -> None:
        """Tell the viewer why and close both ends (their handlers then finish)."""
        code = Close.INTERNAL if failed else Close.NORMAL
        for end in (self.viewer, self.agent):
            if end is None:
                continue
            try:
                if end is self.viewer:
                    note = self.codec.closed_frame(reason)
                    if note is not None:
                        await asyncio.wait_for(end.send(note), 2)
                await asyncio.wait_for(end.close(code, reason), 2)
            except (TimeoutError, ConnectionError, RuntimeError):
                pass


class CodecFn(Protocol):
    def __call__(self, frame: Frame) -> Frame | None: ...
