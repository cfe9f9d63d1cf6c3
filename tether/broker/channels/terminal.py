"""The terminal kind's codec: what the pump does with each frame of a shell.

Output (binary, customer → viewer) is recorded and kept as scrollback for a
viewer that re-attaches. Input (binary, viewer → customer) is recorded as
text only while the customer's PTY echoes: with echo off (a password prompt,
``read -s``) it goes to the recording's hidden-input record instead (a
length marker, and the input sealed to the auditor's key if the broker has
one: ``recording/hidden.py``). Text frames are terminal controls (``protocol/terminal.py``):
``echo`` and ``exit`` from the client, ``resize`` from the viewer; anything
else closes the sender's end.
"""

from __future__ import annotations

from collections import deque

from ...protocol import terminal as t
from ...protocol.errors import ProtocolError
from ...protocol.vt import VtFilter
from ..recording.cast import CastWriter
from .pump import Frame


class Codec:
    def __init__(self, recorder: CastWriter, *, scrollback: int) -> None:
        self.recorder = recorder
        self.echo = True
        self.exit_code: int | None = None
        self._limit = scrollback
        # chunks, not one buffer: a flood does not move the scrollback on every frame
        self._scrollback: deque[bytes] = deque()
        self._size = 0
        self._bounds = VtFilter()  # what any viewer's emulator may be asked (protocol/vt.py)

    def from_agent(self, frame: Frame) -> Frame | None:
        if isinstance(frame, bytes):
            self.recorder.output(frame)  # the recording stays raw
            shown = self._bounds.feed(frame)  # live and replayed alike
            if shown:
                self._keep(shown)
            return shown or None
        control = t.parse(frame, t.FROM_CLIENT)
        if isinstance(control, t.Echo):
            if control.on and not self.echo:
                self.recorder.end_hidden()
            self.echo = control.on
            self.recorder.marker("echo on" if self.echo else "echo off (input hidden)")
        elif isinstance(control, t.Exit):
            self.exit_code = control.code
        return control.to_json()

    def from_viewer(self, frame: Frame) -> Frame | None:
        if isinstance(frame, bytes):
            if self.echo:
                self.recorder.input(frame)
            else:  # hidden by the customer's terminal: never recorded as text
                self.recorder.hidden_input(frame)
            return frame
        control = t.parse(frame, t.FROM_VIEWER)
        if isinstance(control, t.Resize):
            self.recorder.resize(control.cols, control.rows)
            self._bounds.resize(control.rows)
            return control.to_json()
        if isinstance(control, t.Ack):
            return None  # reserved for resuming live shells; nothing uses it yet
        raise ProtocolError("unknown terminal control")

    def _keep(self, data: bytes) -> None:
        self._scrollback.append(data)
        self._size += len(data)
        while self._size - len(self._scrollback[0]) >= self._limit:
            self._size -= len(self._scrollback.popleft())

    def replay(self) -> list[Frame]:
        frames: list[Frame] = []
        if self._scrollback:
            frames.append(b"".join(self._scrollback))
        frames.append(t.Echo(on=self.echo).to_json())
        return frames

    def closed_frame(self, reason: str) -> Frame | None:
        return t.Closed(reason=reason[:200]).to_json()

    def agent_gone_reason(self) -> str:
        return ("the shell exited" if self.exit_code is not None
                else "the customer's client closed the channel")
