"""The shell launcher process: it starts every shell, so a shell's parent holds no secret.

A same-user process can read ``/proc/PID/environ`` of its parent, so a shell forked by
the client itself would show the technician the client's whole environment
(``SSH_AUTH_SOCK``, ``DISPLAY``, ``XAUTHORITY``, tokens). The client therefore starts this
process once, at start-up, as ``python -I -m tether.client.zygote FD`` with an
environment built from an allowlist (:data:`tether.client.launcher.KEPT_ENV`), and asks
it for each shell. Its own environment is the shell's, so there is nothing more to find
one level up.

It speaks a few JSON messages over a ``SOCK_SEQPACKET`` socket (FD):

* in:  ``{"op": "spawn", "id": N, "argv": [...], "cols": C, "rows": R}``
* out: ``{"op": "spawned", "id": N, "pid": P}`` with the PTY master as ``SCM_RIGHTS``
  (this process keeps no copy), ``{"op": "failed", "id": N, "error": "..."}``, and
  ``{"op": "exited", "pid": P, "status": S}`` (a raw wait status) for each child reaped.

It is a child subreaper, so a shell's orphans (``setsid``, double forks) stay under it,
where the client's :func:`tether.client.reaper.kill_all` still finds them. It exits when
the client closes the socket or dies (``PR_SET_PDEATHSIG``). Only the standard library
(and :mod:`~tether.client.prctl`) is imported: it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import sys
import termios

from .prctl import become_subreaper, die_with_parent

MAX_MESSAGE = 64 * 1024


def _send(sock: socket.socket, msg: dict[str, object], fds: list[int] | None = None) -> None:
    data = json.dumps(msg).encode()
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.send(data)


def set_size(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _shell_env(shell: str) -> dict[str, str]:
    env = dict(os.environ)  # already the allowlist: the client started us with it
    env["TERM"] = "xterm-256color"
    env["SHELL"] = shell
    env["TETHER_SESSION"] = "1"
    return env


def spawn(argv: list[str], cols: int, rows: int) -> tuple[int, int]:
    """Fork a PTY running ``argv`` (a login shell when it is one word): (pid, master fd)."""
    shell = argv[0]
    env = _shell_env(shell)
    home = os.environ.get("HOME") or "/"
    pid, fd = os.forkpty()
    if pid == 0:  # child: only simple work until exec
        try:
            set_size(0, cols, rows)
            # Python ignores SIGPIPE and SIGXFSZ, this process SIGHUP and SIGINT, and
            # whatever started the client may ignore more: a shell starts with the
            # defaults (or Ctrl-C would not stop its commands). glibc keeps 32 and 33 for
            # itself: no program can set them, so they are not in valid_signals().
            for sig in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}:
                signal.signal(sig, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, set())
            with contextlib.suppress(OSError):
                os.chdir(home)
            argv0 = "-" + os.path.basename(shell) if len(argv) == 1 else shell
            os.execve(shell, [argv0, *argv[1:]], env)  # noqa: S606
        finally:
            os._exit(127)
    return pid, fd


def _reap(sock: socket.socket) -> None:
    for _ in range(10_000):
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(sock, {"op": "exited", "pid": pid, "status": status})


def _handle(sock: socket.socket, raw: bytes) -> None:
    try:
        msg = json.loads(raw)
        ident = int(msg["id"])
        argv = [str(a) for a in msg["argv"]]
        cols, rows = int(msg["cols"]), int(msg["rows"])
        if msg.get("op") != "spawn" or not argv or not (0 < cols < 65536 and 0 < rows < 65536):
            raise ValueError("bad request")
    except (ValueError, KeyError, TypeError):
        return  # only the client writes here; nothing to answer a garbled line with
    try:
        pid, fd = spawn(argv, cols, rows)
    except OSError as exc:
        _send(sock, {"op": "failed", "id": ident, "error": exc.strerror or "error"})
        return
    try:
        _send(sock, {"op": "spawned", "id": ident, "pid": pid}, [fd])
    finally:
        os.close(fd)


def serve(sock: socket.socket) -> None:
    become_subreaper()
    die_with_parent()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the customer's terminal hanging up
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the client's to handle
    while True:
        _reap(sock)
        try:
            ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        if sock.fileno() in ready:
            try:
                raw = sock.recv(MAX_MESSAGE)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                return
            if not raw:
                return  # the client closed its end: nothing more to start
            _handle(sock, raw)


def main() -> None:
    fd = int(sys.argv[1])
    os.set_inheritable(fd, False)  # passed to us; no shell may hold the client's socket
    sock = socket.socket(fileno=fd)
    try:
        serve(sock)
    except (BrokenPipeError, ConnectionError):
        pass  # the client is gone


if __name__ == "__main__":
    main()
