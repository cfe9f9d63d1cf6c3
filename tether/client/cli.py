"""``tether-client``: show a code, ask the customer, run what they allow.

Exit codes: 0 the session ended (by either side) or Ctrl-C; 2 usage;
3 certificate or host-name failure; 4 the broker refused this client.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import platform
import signal
import socket
import sys
import time
from pathlib import Path

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from .. import __version__
from ..protocol import codes
from ..protocol import messages as m
from ..protocol.channels import KINDS
from ..protocol.errors import ProtocolError, TetherError
from ..protocol.sanitize import clean_text
from . import reaper, tunnel
from .consent import WORDING, Prompter, who
from .journal import Journal, default_path
from .shell import Shell, login_shell, relay
from .watch import Terminal, Watcher

EXIT_OK, EXIT_USAGE, EXIT_TLS, EXIT_REFUSED = 0, 2, 3, 4
REAP_EVERY = 0.05


class Finished(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


class Client:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = tunnel.ws_base(args.broker)
        self.ctx = tunnel.ssl_context(Path(args.ca))
        self.journal = Journal(Path(args.log) if args.log else default_path())
        self.term = Terminal()
        self.prompter = Prompter(args.consent_timeout, self.term.text)
        self.watcher = Watcher(self.term, enabled=not args.no_watch)
        self.shells: dict[str, Shell] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.technician = ""
        self.session = ""
        # What the customer said yes to. The broker is not trusted: a channel the
        # customer did not allow is never opened, whatever the broker sends.
        self.session_allowed = False
        self.allowed: dict[str, str] = {}
        # a single-use secret to take the session up again after a short drop
        self.resume: tuple[str, float] | None = None  # (secret, window in s)
        self.resume_until = 0.0
        self.stop = asyncio.Event()
        self.control: ClientConnection | None = None

    def say(self, text: str) -> None:
        self.term.text(text + "\n")

    # --- main loop ---------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.stop.set)
        loop.add_signal_handler(signal.SIGTERM, self.stop.set)
        reaping = asyncio.ensure_future(self._reap_forever())
        backoff = tunnel.Backoff()
        try:
            for _attempt in range(1_000_000):  # bounded; in practice until a session ends
                try:
                    async with tunnel.open_control(self.base, self.ctx) as ws:
                        backoff.reset()
                        self.control = ws
                        await self._serve(ws)
                except Finished as done:
                    return done.code
                except InvalidStatus as exc:
                    status = exc.response.status_code
                    if status in (401, 403, 429):
                        self.say(f"The broker refused this client (HTTP {status}).")
                        return EXIT_REFUSED
                    await self._backoff(backoff, f"HTTP {status}")
                    if self.stop.is_set():
                        return EXIT_OK
                except TetherError as exc:  # the broker broke the protocol
                    self.end_local("the broker sent a malformed message")
                    self.say("The broker sent something this client does not understand "
                             f"({clean_text(exc.message)}); the session is over.")
                    return EXIT_REFUSED
                except (OSError, TimeoutError, WebSocketException) as exc:
                    if tunnel.is_cert_failure(exc):
                        self.say(f"Certificate check failed: {exc}. Is --ca the right file "
                                 "for this broker?")
                        return EXIT_TLS
                    if isinstance(exc, ConnectionClosed) and exc.rcvd and exc.rcvd.code == 4429:
                        self.say(f"The broker refused this client: {clean_text(exc.rcvd.reason)}")
                        return EXIT_REFUSED
                    refused = isinstance(exc, ConnectionClosed) and exc.rcvd is not None \
                        and exc.rcvd.code == 4401
                    self._connection_lost(refused_resume=refused)
                    await self._backoff(backoff, exc.__class__.__name__)
                    if self.stop.is_set():
                        return EXIT_OK
                finally:
                    self.control = None
            return EXIT_OK
        finally:
            reaping.cancel()
            self.end_local("the client stopped")
            self.journal.close()
            self.term.close()

    async def _backoff(self, backoff: tunnel.Backoff, why: str) -> None:
        wait = backoff.next()
        self.say(f"Cannot reach the broker ({why}); retrying in {wait:.1f} s. "
                 "Press Ctrl-C to stop.")
        try:
            await asyncio.wait_for(self.stop.wait(), wait)
        except TimeoutError:
            pass

    def _connection_lost(self, refused_resume: bool) -> None:
        """Channels end at once; the session itself may be resumed for a short while."""
        if refused_resume and self.resume_until:
            self.say("The session could not be resumed; you will get a new code.")
            self.resume_until = 0.0
        if self.session_allowed and self.resume and not self.resume_until:
            self.resume_until = time.monotonic() + self.resume[1]
            self.say("Connection to the broker lost; trying to resume the session "
                     f"for {self.resume[1]:.0f} s.")
        if self.resume_until and time.monotonic() < self.resume_until:
            self._stop_channels()  # nothing the technician started runs while we are away
        else:
            self.resume_until = 0.0
            self.end_local("the connection to the broker was lost")

    async def _serve(self, ws: ClientConnection) -> None:
        if self.resume and self.resume_until and time.monotonic() < self.resume_until:
            await ws.send(m.Resume(secret=self.resume[0], version=__version__,
                                   os=platform.system()).to_json())
            self.resume = None  # single use: the broker sends a new one
        else:
            if self.session_allowed:  # the window passed: that session is over
                self.end_local("the session could not be resumed in time")
            await ws.send(m.Hello(version=__version__, os=platform.system()).to_json())
        self.journal.write("connected", broker=self.args.broker)
        receiver = asyncio.ensure_future(self._receive(ws))
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({receiver, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if self.stop.is_set() and not receiver.done():
            receiver.cancel()
            self.journal.write("ended", by="customer")
            try:
                await ws.send(m.EndSession(reason="ended by the customer").to_json())
            except ConnectionClosed:
                pass
            self.end_local("you ended the session")
            self.say("Session ended. Nothing the technician started is still running.")
            raise Finished(EXIT_OK)
        receiver.result()  # re-raise a disconnect for the reconnect loop

    async def _receive(self, ws: ClientConnection) -> None:
        async for raw in ws:
            if isinstance(raw, bytes):
                raise ProtocolError("binary frame on the control channel")
            msg = m.parse(raw, m.BROKER_MESSAGES)
            await self._handle(ws, msg)
        raise ConnectionError("the broker closed the connection")

    async def _handle(self, ws: ClientConnection, msg: m.Message) -> None:
        if isinstance(msg, m.CodeIssued):
            try:
                code = codes.format_code(codes.normalize(msg.code))
            except TetherError:
                raise ProtocolError("the broker sent a malformed code") from None
            minutes = max(1, round(msg.expires_in / 60))
            self.say(f"Session code: {code}")
            self.say(f"Read this code to your technician. It is valid for {minutes} min "
                     "and works once.")
            self.journal.write("code_issued", expires_in=msg.expires_in)
        elif isinstance(msg, m.ResumeToken):
            self.resume = (msg.secret, max(0.0, min(msg.window, 300.0)))
        elif isinstance(msg, m.Resumed):
            self.resume_until = 0.0
            self.journal.write("resumed", session=clean_text(msg.session, 40))
            self.say(f"Reconnected: the session with {self.technician} continues.")
        elif isinstance(msg, m.Claimed):
            self.technician = who(msg.technician, msg.org)
            self.session = clean_text(msg.session, 40)
            self.journal.write("claimed", technician=self.technician, session=self.session)
            self.say(f"\n{self.technician} entered your code.")
            asyncio.ensure_future(self._decide_session(ws))
        elif isinstance(msg, m.ChannelRequest):
            if not self.session_allowed:
                self.journal.write("refused_unasked", channel=clean_text(msg.channel, 40))
                await ws.send(m.ChannelDecision(channel=msg.channel, allow=False,
                                                reason="no session").to_json())
                return
            asyncio.ensure_future(self._decide_channel(ws, msg))
        elif isinstance(msg, m.ChannelReady):
            self._start_channel(msg)
        elif isinstance(msg, m.ChannelClose):
            self.journal.write("channel_closed", channel=msg.channel, by="broker",
                               reason=clean_text(msg.reason))
            self._stop_channel(msg.channel, clean_text(msg.reason))
        elif isinstance(msg, m.Ended):
            reason = clean_text(msg.reason)
            self.journal.write("ended", by="broker", reason=reason)
            self.end_local(reason)
            self.say(f"Session ended: {reason}")
            raise Finished(EXIT_OK)
        elif isinstance(msg, m.Notice):
            text = clean_text(msg.text, 300)
            self.journal.write("notice", text=text)
            self.say(f"Broker: {text}")
        elif isinstance(msg, m.Refused):
            self.say(f"The broker refused this client: {clean_text(msg.reason)}")
            raise Finished(EXIT_REFUSED)

    # --- consent -----------------------------------------------------------

    async def _decide_session(self, ws: ClientConnection) -> None:
        question = WORDING["session"].format(who=self.technician)
        answer = await self.prompter.ask("session", question)
        self.journal.write("decision", what="session", allow=answer.allow, reason=answer.reason)
        self.session_allowed = answer.allow
        if answer.allow:
            msg = m.SessionDecision(allow=True, reason=answer.reason,
                                    machine=socket.gethostname(), user=getpass.getuser(),
                                    os=platform.platform())
        else:
            msg = m.SessionDecision(allow=False, reason=answer.reason)
        await ws.send(msg.to_json())

    async def _decide_channel(self, ws: ClientConnection, msg: m.ChannelRequest) -> None:
        row = KINDS.get(msg.kind)
        kind = row.opens if row is not None and row.available else ""
        requester = who(msg.technician, msg.org)
        self.journal.write("request", channel=msg.channel, kind=msg.kind, technician=requester)
        if not kind or kind == "session":
            answer_allow, reason = False, "unsupported"
        elif kind == "shell" and os.geteuid() == 0 and not self.args.allow_root:
            self.say(f"{requester} asked for a shell, but this client runs as root; "
                     "refused (start it with --allow-root to allow a root shell).")
            answer_allow, reason = False, "root shell not allowed"
        else:
            question = WORDING[kind].format(who=requester, user=getpass.getuser())
            answer = await self.prompter.ask(kind, question)
            answer_allow, reason = answer.allow, answer.reason
        self.journal.write("decision", channel=msg.channel, kind=msg.kind, allow=answer_allow,
                           reason=reason)
        if answer_allow:
            self.allowed[msg.channel] = kind
        await ws.send(m.ChannelDecision(channel=msg.channel, allow=answer_allow,
                                        reason=reason).to_json())

    # --- channels ----------------------------------------------------------

    def _start_channel(self, ready: m.ChannelReady) -> None:
        # Consent is enforced here, on the customer's machine: only a channel the
        # customer said yes to, once.
        if self.allowed.pop(ready.channel, None) != "shell" or ready.channel in self.tasks:
            self.journal.write("refused_unrequested", channel=clean_text(ready.channel, 40))
            self.say("The broker tried to open a channel you did not allow; refused.")
            return
        self.tasks[ready.channel] = asyncio.ensure_future(self._run_shell(ready))

    async def _run_shell(self, ready: m.ChannelReady) -> None:
        channel = ready.channel
        reason = "closed"
        shell: Shell | None = None
        try:
            ws = await tunnel.open_relay(self.base, self.ctx, ready.secret)
            async with ws:
                argv = self.args.shell.split() if self.args.shell else [login_shell()]
                shell = Shell(argv, max(2, min(ready.cols, 1000)), max(2, min(ready.rows, 1000)))
                shell.start()
                self.shells[channel] = shell
                self.journal.write("channel_open", channel=channel, kind="terminal",
                                   pid=shell.pid, shell=argv[0])
                self.watcher.set_indicator(
                    f"{self.technician} has a shell on this computer — press Ctrl-C to end")
                reason = await relay(shell, ws, lambda d: self.watcher.output(channel, d))
        except (OSError, WebSocketException, TetherError) as exc:
            reason = f"could not open the channel: {exc.__class__.__name__}"
        finally:
            self.shells.pop(channel, None)
            if shell:
                shell.close()
            self.watcher.forget(channel)
            self.tasks.pop(channel, None)
            if not self.shells:
                self.watcher.set_indicator("")
            self.journal.write("channel_closed", channel=channel, reason=reason)
            if not self.stop.is_set():  # after Ctrl-C the session summary says it all
                self.say(f"Shell closed: {reason}.")
            if self.control is not None and not self.stop.is_set():
                try:
                    await self.control.send(m.ChannelClosed(channel=channel,
                                                            reason=reason).to_json())
                except ConnectionClosed:
                    pass

    def _stop_channel(self, channel: str, reason: str) -> None:
        task = self.tasks.get(channel)
        shell = self.shells.get(channel)
        if shell:
            shell.kill()
        if task:
            task.cancel()

    async def _reap_forever(self) -> None:
        """Collect exited children (shells and adopted orphans) every REAP_EVERY s.

        Polling rather than a SIGCHLD handler: uvloop refuses one, and a zombie
        that waits a few milliseconds longer costs nothing.
        """
        while True:
            self._reap()
            await asyncio.sleep(REAP_EVERY)

    def _reap(self) -> None:
        for pid, status in reaper.reap():
            for shell in self.shells.values():
                if shell.pid == pid:
                    shell.mark_exited(os.waitstatus_to_exitcode(status))

    def _stop_channels(self) -> None:
        """Stop every channel and every process the technician started."""
        self.allowed.clear()
        for channel in list(self.tasks):
            self._stop_channel(channel, "stopped")
        survivors = reaper.kill_all()
        if survivors:
            self.say(f"Warning: {len(survivors)} process(es) could not be stopped: "
                     + ", ".join(map(str, survivors)))
            self.journal.write("survivors", pids=survivors)
        self.watcher.set_indicator("")

    def end_local(self, reason: str) -> None:
        """End everything on this machine: the session, every channel and descendant."""
        self.session_allowed = False
        self.resume = None
        self.resume_until = 0.0
        self._stop_channels()


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tether-client",
                                description="Let a technician help you, with your consent.")
    p.add_argument("--broker", required=True, help="https://HOST:PORT of your support broker")
    p.add_argument("--ca", required=True, help="the broker's CA certificate (PEM)")
    p.add_argument("--allow-root", action="store_true", help="allow sharing a root shell")
    p.add_argument("--consent-timeout", type=float, default=60.0,
                   help="seconds to answer a prompt before it counts as no (default 60)")
    p.add_argument("--no-watch", action="store_true", help="do not show the shell's output")
    p.add_argument("--shell", help="shell to run instead of your login shell")
    p.add_argument("--log", help="local log file (default ~/.local/state/tether/client.log)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        tunnel.ws_base(args.broker)
    except ValueError as exc:
        print(f"tether-client: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not Path(args.ca).is_file():
        print(f"tether-client: no CA file at {args.ca}", file=sys.stderr)
        return EXIT_USAGE
    reaper.become_subreaper()
    print(f"Tether client {__version__} — connecting to {args.broker}", flush=True)
    if os.geteuid() == 0:
        print("Running as root: " + ("a technician may get a ROOT shell if you allow it "
                                     "(--allow-root)." if args.allow_root else
                                     "shell requests will be refused (see --allow-root)."),
              flush=True)
    print("Press Ctrl-C at any time to end the session.", flush=True)
    client = Client(args)
    try:
        import uvloop  # the [fast] extra: less CPU per relayed message

        uvloop.install()
    except ImportError:
        pass
    try:
        return asyncio.run(client.run())
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
