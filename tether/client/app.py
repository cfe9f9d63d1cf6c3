"""The customer's client: one control connection at a time, broker messages by table.

The broker is not trusted. Each message it sends is parsed strictly and handed
to one handler in :data:`HANDLERS`; what the customer allowed is kept in
:class:`~tether.client.decisions.Decisions`, and a channel they did not allow is
never opened, whatever the broker sends. Every background task (a prompt, a
channel, the reaper) belongs to a :class:`~tether.client.tasks.TaskOwner` that
cancels and awaits it when its connection or the client ends.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import platform
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from .. import __version__
from ..protocol import codes
from ..protocol import messages as m
from ..protocol.consent import Refusal, who
from ..protocol.errors import ProtocolError, TetherError, UnknownMessage
from ..protocol.sanitize import clean_text
from . import reaper, tunnel
from .aftercare import Aftercare
from .channels import RUNNERS, OpenChannels
from .channels.watch import Terminal, Watcher
from .consent import Prompter
from .decisions import Decisions
from .journal import Journal, default_path
from .launcher import Launcher
from .tasks import TaskOwner
from .tunnel import Finished, Outcome

__all__ = ["HANDLERS", "Client", "Finished", "Outcome"]

REAP_EVERY = 0.05


class Client:
    def __init__(self, args: argparse.Namespace, term: Terminal | None = None) -> None:
        self.args = args
        self.base = tunnel.ws_base(args.broker)
        self.ctx = tunnel.ssl_context(Path(args.ca))
        self.journal = Journal(Path(args.log) if args.log else default_path())
        self.term = term or Terminal()
        self.watcher = Watcher(self.term, enabled=not args.no_watch, journal=self.journal)
        self.decisions = Decisions(Prompter(args.consent_timeout, self.term.text),
                                   self.term.text, user=getpass.getuser(),
                                   allow_root=args.allow_root, kinds=RUNNERS)
        self.aftercare = Aftercare(self.journal, self.say, default_path().parent,
                                   getpass.getuser())
        # every shell is started by the launcher, never by this process (see launcher.py)
        self.launcher = Launcher(on_exit=self._child_exited)
        self.channels = OpenChannels(self.base, self.ctx, self.watcher, self.journal, args.shell,
                                     self.launcher.spawn, self.aftercare.before_shell,
                                     self.aftercare.count_stopped)
        self.technician = ""
        # a single-use secret to take the session up again after a short drop
        self.resume: tuple[str, float] | None = None  # (secret, window in s)
        self.resume_until = 0.0
        self.stop = asyncio.Event()
        self.control: ClientConnection | None = None
        self.tasks: TaskOwner | None = None  # the current connection's tasks

    def say(self, text: str) -> None:
        self.term.text(text + "\n")

    # --- connections (tunnel.keep_connected drives these) ---------------------

    async def run(self) -> Outcome:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        try:
            self.aftercare.warn_at_start()  # before any code is shown
            try:
                self.launcher.start()
            except OSError as exc:  # each shell will try again, and fail visibly if it must
                self.journal.write("launcher_failed", error=exc.strerror or "error")
            async with TaskOwner() as background:
                background.spawn(self._reap_forever(), name="reaper")
                return await tunnel.keep_connected(self, self.base, self.ctx)
        finally:
            self.end_local("the client stopped")
            self.launcher.close()
            self.journal.close()
            self.term.close()

    def broken(self, reason: str) -> None:
        self.end_local(reason)

    def lost(self, refused_resume: bool) -> None:
        """Channels end at once; the session itself may be resumed for a short while."""
        if refused_resume and self.resume_until:
            self.say("The session could not be resumed; you will get a new code.")
            self.resume_until = 0.0
        if self.decisions.session_allowed and self.resume and not self.resume_until:
            self.resume_until = time.monotonic() + self.resume[1]
            self.say("Connection to the broker lost; trying to resume the session "
                     f"for {self.resume[1]:.0f} s.")
        if self.resume_until and time.monotonic() < self.resume_until:
            self._stop_channels()  # no channel, and nothing in our tree, runs while we are away
        else:
            self.resume_until = 0.0
            self.end_local("the connection to the broker was lost")

    async def serve(self, ws: ClientConnection) -> None:
        self.control = ws
        try:
            await self._serve(ws)
        finally:
            self.control = None

    async def _serve(self, ws: ClientConnection) -> None:
        if self.resume and self.resume_until and time.monotonic() < self.resume_until:
            await ws.send(m.Resume(secret=self.resume[0], version=__version__,
                                   os=platform.system()).to_json())
            self.resume = None  # single use: the broker sends a new one
        else:
            if self.decisions.session_allowed:  # the window passed: that session is over
                self.end_local("the session could not be resumed in time")
            await ws.send(m.Hello(version=__version__, os=platform.system()).to_json())
        self.journal.write("connected", broker=self.args.broker)
        async with TaskOwner() as tasks:  # prompts and channels end with the connection
            self.tasks = tasks
            try:
                tasks.spawn(self._receive(ws), name="receive")
                failure = await tasks.wait(self.stop)
                if failure is not None:
                    raise failure  # a disconnect goes to the reconnect loop
                await tasks.aclose()  # no prompt or channel outlives the customer's end
            finally:
                self.tasks = None
        self.journal.write("ended", by="customer")
        try:
            await asyncio.wait_for(ws.send(m.EndSession(reason="ended by the customer")
                                           .to_json()), tunnel.CLOSE_TIMEOUT)
        except (ConnectionClosed, TimeoutError):
            pass
        self.say("Session ended.")
        self.end_local("you ended the session")  # says what it stopped and what it could not
        raise Finished(Outcome.ENDED)

    async def _receive(self, ws: ClientConnection) -> None:
        async for raw in ws:
            if isinstance(raw, bytes):
                raise ProtocolError("binary frame on the control channel")
            await self.handle(m.parse(raw, m.BROKER_MESSAGES))
        raise ConnectionError("the broker closed the connection")

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        if self.tasks is None:
            coro.close()
            raise ConnectionError("no connection to the broker")
        return self.tasks.spawn(coro, name=name)

    async def _send(self, msg: m.Message) -> None:
        if self.control is None:
            raise ConnectionError("no connection to the broker")
        await self.control.send(msg.to_json())

    # --- broker messages: one handler each (HANDLERS below) --------------------

    async def handle(self, msg: m.Message) -> None:
        handler = HANDLERS.get(type(msg))
        if handler is None:
            raise UnknownMessage(f"unexpected message {msg.type!r}")
        await handler(self, msg)

    async def _on_code(self, msg: m.CodeIssued) -> None:
        try:
            code = codes.format_code(codes.normalize(msg.code))
        except TetherError:
            raise ProtocolError("the broker sent a malformed code") from None
        minutes = max(1, round(msg.expires_in / 60))
        self.say(f"Session code: {code}")
        self.say(f"Read this code to your technician. It is valid for {minutes} min "
                 "and works once.")
        self.journal.write("code_issued", expires_in=msg.expires_in)

    async def _on_resume_token(self, msg: m.ResumeToken) -> None:
        self.resume = (msg.secret, max(0.0, min(msg.window, 300.0)))

    async def _on_resumed(self, msg: m.Resumed) -> None:
        self.resume_until = 0.0
        self.journal.write("resumed", session=clean_text(msg.session, 40))
        self.say(f"Reconnected: the session with {self.technician} continues.")

    async def _on_claimed(self, msg: m.Claimed) -> None:
        if self.decisions.session_allowed or self.channels:  # a claim in a session: start over
            self.journal.write("ended", by="broker", reason="claimed again")
            self.end_local("the broker claimed the session again")
        self.decisions.new_session()
        self.technician = who(msg.technician, msg.org)
        self.journal.write("claimed", technician=self.technician,
                           session=clean_text(msg.session, 40))
        self.say(f"\n{self.technician} entered your code.")
        self._spawn(self._decide_session(msg), "consent:session")

    async def _on_channel_request(self, msg: m.ChannelRequest) -> None:
        if not self.decisions.session_allowed:
            self.journal.write("refused_unasked", channel=clean_text(msg.channel, 40))
            await self._send(m.ChannelDecision(channel=msg.channel, allow=False,
                                               reason=Refusal.NO_SESSION))
            return
        self._spawn(self._decide_channel(msg), "consent:channel")

    async def _on_channel_ready(self, msg: m.ChannelReady) -> None:
        # Consent is enforced here, on the customer's machine: only a channel the
        # customer said yes to, once.
        kind = self.decisions.allowed_kind(msg.channel)
        if kind is None or msg.channel in self.channels or self.tasks is None:
            self.journal.write("refused_unrequested", channel=clean_text(msg.channel, 40))
            self.say("The broker tried to open a channel you did not allow; refused.")
            return
        self.channels.start(self.tasks, msg, kind, self.technician, self._channel_closed)

    async def _on_channel_close(self, msg: m.ChannelClose) -> None:
        self.journal.write("channel_closed", channel=msg.channel, by="broker",
                           reason=clean_text(msg.reason))
        self.channels.stop(msg.channel)

    async def _on_ended(self, msg: m.Ended) -> None:
        reason = clean_text(msg.reason)
        self.journal.write("ended", by="broker", reason=reason)
        self.say(f"Session ended: {reason}")
        self.end_local(reason)
        raise Finished(Outcome.ENDED)

    async def _on_notice(self, msg: m.Notice) -> None:
        text = clean_text(msg.text, 300)
        self.journal.write("notice", text=text)
        self.say(f"Broker: {text}")

    async def _on_refused(self, msg: m.Refused) -> None:
        self.say(f"The broker refused this client: {clean_text(msg.reason)}")
        raise Finished(Outcome.REFUSED)

    async def _on_heartbeat(self, msg: m.Heartbeat) -> None:
        """The broker's keep-alive: nothing to do."""

    # --- consent -----------------------------------------------------------

    async def _decide_session(self, msg: m.Claimed) -> None:
        answer = await self.decisions.session(msg)
        self.journal.write("decision", what="session", allow=answer.allow, reason=answer.reason)
        if answer.allow:
            decision = m.SessionDecision(allow=True, reason=answer.reason,
                                         machine=socket.gethostname(), user=getpass.getuser(),
                                         os=platform.platform())
        else:
            decision = m.SessionDecision(allow=False, reason=answer.reason)
        await self._send(decision)

    async def _decide_channel(self, msg: m.ChannelRequest) -> None:
        self.journal.write("request", channel=msg.channel, kind=msg.kind,
                           technician=who(msg.technician, msg.org))
        answer = await self.decisions.channel(msg)
        self.journal.write("decision", channel=msg.channel, kind=msg.kind, allow=answer.allow,
                           reason=answer.reason)
        await self._send(m.ChannelDecision(channel=msg.channel, allow=answer.allow,
                                           reason=answer.reason))

    # --- channels ----------------------------------------------------------

    async def _channel_closed(self, channel: str, kind: str, reason: str) -> None:
        self.decisions.closed(channel)  # allowed once: a second channel_ready is refused
        if self.stop.is_set():  # after Ctrl-C the session summary says it all
            return
        self.say(f"{RUNNERS[kind].title} closed: {reason}.")
        if self.control is not None:
            try:
                await self._send(m.ChannelClosed(channel=channel, reason=reason))
            except ConnectionClosed:
                pass

    async def _reap_forever(self) -> None:
        """Collect exited children (shells and adopted orphans) every REAP_EVERY s.

        Polling rather than a SIGCHLD handler: uvloop refuses one, and a zombie
        that waits a few milliseconds longer costs nothing.
        """
        while True:
            for pid, status in reaper.reap():
                self._child_exited(pid, status)
            await asyncio.sleep(REAP_EVERY)

    def _child_exited(self, pid: int, status: int) -> None:
        """A shell (or an orphan) ended: reaped here, or by the launcher if it was its child."""
        self.channels.child_exited(pid, status)

    def _is_launcher(self, pid: int) -> bool:
        return pid == self.launcher.pid

    def _stop_channels(self) -> None:
        """Stop every channel and every process in the client's tree but the launcher.

        Only the tree: what the technician started through a daemon the customer runs
        is not in it, and :meth:`Aftercare.finish` lists that at the session's end.
        """
        tree = tuple(p for p in reaper.descendants() if not self._is_launcher(p))
        self.decisions.close_all()
        self.channels.stop_all()
        done = reaper.kill_all(exclude=self._is_launcher, seen=tree)
        self.aftercare.count_stopped(done.stopped)
        if done.survivors:
            self.say(f"Warning: {len(done.survivors)} process(es) could not be stopped: "
                     + ", ".join(map(str, done.survivors)))
            self.journal.write("survivors", pids=list(done.survivors))
        self.watcher.set_indicator("")

    def end_local(self, reason: str) -> None:
        """End the session here: every channel, and every process in the client's tree."""
        self.decisions.end()
        self.resume = None
        self.resume_until = 0.0
        self._stop_channels()
        self.aftercare.finish(reaper.descendants())


Handler = Callable[[Client, Any], Awaitable[None]]

#: every message the broker may send, and what the client does with it
HANDLERS: dict[type[m.Message], Handler] = {
    m.CodeIssued: Client._on_code,
    m.ResumeToken: Client._on_resume_token,
    m.Resumed: Client._on_resumed,
    m.Claimed: Client._on_claimed,
    m.ChannelRequest: Client._on_channel_request,
    m.ChannelReady: Client._on_channel_ready,
    m.ChannelClose: Client._on_channel_close,
    m.Ended: Client._on_ended,
    m.Notice: Client._on_notice,
    m.Refused: Client._on_refused,
    m.Heartbeat: Client._on_heartbeat,
}
