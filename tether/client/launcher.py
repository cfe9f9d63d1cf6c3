"""The client's handle on its shell launcher (:mod:`~tether.client.zygote`).

The launcher is started once, when the client starts, with an environment built from
:data:`KEPT_ENV` only: no agent socket, display, X authority, D-Bus address, tmux
socket or token the customer's own environment may hold. Every shell is forked by it,
so ``/proc/$PPID/environ`` in a technician's shell shows that clean environment and
nothing else. (It does not make the customer's other processes unreadable: a
same-user shell can read them; the consent wording and the README say so.)

If the launcher is gone (a technician can kill it: it runs as the customer), the next
shell starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping

#: the only variables of the client's environment a shell (and its parent) inherits
KEPT_ENV = ("HOME", "USER", "LOGNAME", "PATH", "LANG", "LANGUAGE", "TZ", "TMPDIR", "MAIL")
KEPT_PREFIXES = ("LC_",)
#: seconds to wait for the launcher to start a shell (it takes milliseconds)
SPAWN_TIMEOUT = 10.0
MAX_MESSAGE = 64 * 1024


def clean_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items()
            if k in KEPT_ENV or k.startswith(KEPT_PREFIXES)}


class Launcher:
    """Starts the launcher process and asks it for shells; reports their exits."""

    def __init__(self, on_exit: Callable[[int, int], None]) -> None:
        self.on_exit = on_exit  # (pid, raw wait status) of each shell or orphan it reaped
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[int, int]]] = {}

    @property
    def pid(self) -> int:
        """The launcher's PID while it runs (0 otherwise)."""
        return self.proc.pid if self.proc is not None and self.sock is not None else 0

    def start(self) -> None:
        if self.sock is not None:
            return
        if self.proc is not None:
            self.proc.poll()  # the last one ended: settle its Popen (it may be reaped already)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            # -I: no PYTHON* variables, no user site, no current directory on sys.path.
            # A new session: the customer's Ctrl-C and hang-up are the client's to handle.
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-m", "tether.client.zygote", str(theirs.fileno())],
                env=clean_env(), pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd="/",
                start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.sock = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self._readable)

    async def spawn(self, argv: list[str], cols: int, rows: int) -> tuple[int, int]:
        """A new shell in a PTY: (pid, master fd). Raises OSError if it cannot start."""
        self.start()
        assert self.sock is not None
        ident = next(self._ids)
        fut: asyncio.Future[tuple[int, int]] = asyncio.get_running_loop().create_future()
        self._pending[ident] = fut
        try:
            self.sock.send(json.dumps({"op": "spawn", "id": ident, "argv": argv,
                                       "cols": cols, "rows": rows}).encode())
            return await asyncio.wait_for(fut, SPAWN_TIMEOUT)
        except TimeoutError:
            raise OSError("the shell launcher did not answer") from None
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                os.close(fut.result()[1])  # answered, but nobody is left to own the PTY
            raise
        finally:
            self._pending.pop(ident, None)

    def _readable(self) -> None:
        if self.sock is None:
            return
        for _ in range(1000):
            try:
                data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, 1)
            except BlockingIOError:
                return
            except OSError:
                data, fds = b"", []
            if not data:
                for fd in fds:
                    os.close(fd)
                self._gone()
                return
            self._message(data, fds)

    def _message(self, data: bytes, fds: list[int]) -> None:
        try:
            msg = json.loads(data)
            op = msg["op"]
            if op == "exited":
                self.on_exit(int(msg["pid"]), int(msg["status"]))
            elif op in ("spawned", "failed"):
                fut = self._pending.get(int(msg["id"]))
                if fut is not None and not fut.done():
                    if op == "spawned" and len(fds) == 1:
                        os.set_inheritable(fds[0], False)  # SCM_RIGHTS fds are inheritable
                        fut.set_result((int(msg["pid"]), fds.pop()))
                    else:
                        fut.set_exception(OSError(str(msg.get("error", "no PTY"))[:100]))
        except (ValueError, KeyError, TypeError):
            pass  # the launcher runs as the customer: a garbled message starts nothing
        finally:
            for fd in fds:
                os.close(fd)

    def _gone(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(ValueError, RuntimeError):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(OSError("the shell launcher ended"))

    def close(self) -> None:
        """Stop the launcher (closing its socket ends it; a kill makes sure)."""
        proc = self.proc
        self._gone()
        if proc is not None:
            # only while it is our unreaped child can its PID not name another process
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(SPAWN_TIMEOUT)
            self.proc = None
