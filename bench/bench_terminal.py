#!/usr/bin/env python3
"""Terminal benchmark for Tether: flood throughput, keystroke echo, session open.

Run from the repository root with the dev venv's Python, as root::

    /tmp/venv/bin/python bench/bench_terminal.py            # defaults: 100 MB, 200, 30
    /tmp/venv/bin/python bench/bench_terminal.py --help

Everything is real processes on 127.0.0.1: ``tether-broker`` (TLS, recording
on, as it always is), ``tether-client`` in a PTY (``--shell "/bin/bash
--norc --noprofile"``), a scripted technician (aiohttp, like the browser
page), a private ``sshd`` for the OpenSSH comparison, and a bare local PTY
for the ceiling. The benchmark prints figures; it never passes or fails on
time. Every wait has a deadline and every process it starts is stopped by
its PID. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import pwd
import random
import re
import secrets
import select
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import aiohttp
import ptyprocess
from common import (
    ROOT,
    arg_parser,
    banner,
    cpu_seconds,
    event_loop,
    git_head,
    load_average,
    log,
    machine_ticks,
    now,
    parse,
    pct,
    print_header,
    run,
)

from tests.helpers import Broker, Customer, Technician

FIXED_SHELL = "/bin/bash --norc --noprofile"
MB = 1_000_000  # figures are in MB = 10^6 bytes of the flood file
LETTERS = [c.encode() for c in string.ascii_lowercase]


# --------------------------------------------------------------------------- helpers


def machine_busy(interval: float = 0.5) -> float:
    """Whole-machine CPU use over ``interval``, in % of one core (nproc cores = nproc*100)."""
    b0, t0 = machine_ticks()
    time.sleep(interval)
    b1, t1 = machine_ticks()
    ncpu = os.cpu_count() or 1
    return (b1 - b0) / max(1, t1 - t0) * 100 * ncpu


IDLE_THRESHOLD = 15.0  # % of one core


def wait_idle(limit: float) -> None:
    """Wait (at most ``limit`` s) until other work leaves the machine nearly idle."""
    deadline = now() + limit
    busy = machine_busy()
    while busy > IDLE_THRESHOLD and now() < deadline:
        busy = machine_busy()
    if busy > IDLE_THRESHOLD:
        warn_busy(busy)


def warn_busy(busy: float) -> None:
    log(f"  WARNING: the machine is busy with other work ({busy:.0f}% of one core "
        "before this part); the figures below are disturbed")


class CpuMeter:
    """CPU used between start() and stop() by named processes, in % of one core, plus the
    whole machine's use ("machine": everything, kernel threads and other work included)."""

    def __init__(self, roots: dict[str, tuple[int, str]]) -> None:
        self.roots = roots
        self.before: dict[str, float] = {}
        self.t0 = 0.0
        self.m0 = (0, 0)
        self.usage: dict[str, float] = {}

    def start(self) -> None:
        self.before = {k: cpu_seconds(*v) for k, v in self.roots.items()}
        self.m0 = machine_ticks()
        self.t0 = now()

    def stop(self) -> dict[str, float]:
        wall = now() - self.t0
        m1 = machine_ticks()
        for k, v in self.roots.items():
            self.usage[k] = (cpu_seconds(*v) - self.before[k]) / wall * 100 if wall > 0 else 0.0
        self.usage["machine"] = ((m1[0] - self.m0[0]) / max(1, m1[1] - self.m0[1]) * 100
                                 * (os.cpu_count() or 1))
        return self.usage


def contextlib_null() -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()


def fmt_cpu(usage: dict[str, float]) -> str:
    return ", ".join(f"{k} {max(0.0, v):.0f}%" for k, v in usage.items())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_flood_file(path: Path, size: int) -> None:
    """Printable ASCII lines (79 chars + LF); a random 1 MiB block repeated."""
    rnd = random.Random(42)
    alphabet = string.ascii_letters + string.digits + " .,;:-_=+()[]{}<>/!?#%&*"
    lines = []
    n = 0
    while n < (1 << 20):
        line = "".join(rnd.choices(alphabet, k=79)) + "\n"
        lines.append(line)
        n += len(line)
    block = "".join(lines).encode()
    with open(path, "wb") as f:
        left = size
        while left > 0:
            piece = block[:left]
            f.write(piece)
            left -= len(piece)


def shell_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
    env["TERM"] = "xterm-256color"
    return env


class Cleanup:
    """Stops what the benchmark started, newest first, each by its own handle/PID."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], Any]]] = []

    def add(self, what: str, fn: Callable[[], Any]) -> None:
        self.steps.append((what, fn))

    def run(self) -> None:
        while self.steps:
            what, fn = self.steps.pop()
            try:
                fn()
            except Exception as exc:  # keep cleaning up
                print(f"  cleanup of {what} failed: {exc!r}", file=sys.stderr)


def stop_popen(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 5) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(wait)


# --------------------------------------------------------------------------- local PTY reader


class LocalPty:
    """A command in a PTY whose master this process reads (no asyncio).

    Reads are plain blocking ``os.read(fd, 65536)`` calls, one after another,
    which is the fastest simple Python reader of a PTY here (a poll before
    every read costs 15-25 %); a watchdog timer kills the command if a wait
    overruns, so every wait is bounded.
    """

    def __init__(self, argv: list[str], cwd: str, env: dict[str, str],
                 dims: tuple[int, int] = (30, 100)) -> None:
        self.proc = ptyprocess.PtyProcess.spawn(argv, cwd=cwd, env=env, dimensions=dims)
        self.fd = self.proc.fd
        os.set_blocking(self.fd, True)
        self.poll = select.poll()
        self.poll.register(self.fd, select.POLLIN)
        self._expired = False

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        for _ in range(len(data) + 1):  # each write makes progress or raises
            if not view:
                return
            n = os.write(self.fd, view)
            view = view[n:]

    def _expire(self) -> None:
        self._expired = True
        self.close()

    def read_until(self, marker: bytes, timeout: float) -> int:
        """Read until ``marker`` shows up in the output; returns bytes read."""
        total = 0
        keep = len(marker) - 1
        carry = b""
        fd = self.fd
        read = os.read
        watchdog = threading.Timer(timeout, self._expire)
        watchdog.daemon = True
        watchdog.start()
        try:
            while True:
                try:
                    chunk = read(fd, 65536)
                except OSError as exc:
                    chunk = b""
                    if not self._expired:
                        raise EOFError(f"PTY closed before {marker!r}") from exc
                if not chunk:
                    if self._expired:
                        raise TimeoutError(f"{marker!r} not seen in {timeout:.0f} s; "
                                           f"last output: {carry[-300:]!r}")
                    raise EOFError(f"PTY closed before {marker!r}; last output: "
                                   f"{carry[-300:]!r}")
                total += len(chunk)
                if marker in chunk or (carry and marker in carry + chunk[:keep]):
                    return total
                carry = chunk[-max(keep, 300):]
        finally:
            watchdog.cancel()

    def drain(self, quiet: float = 0.05, limit: float = 2.0) -> bytes:
        """Read until nothing arrives for ``quiet`` seconds (at most ``limit``)."""
        out = bytearray()
        deadline = now() + limit
        while now() < deadline and self.poll.poll(quiet * 1000):
            try:
                chunk = os.read(self.fd, 65536)  # poll said readable: does not block
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def close(self) -> None:
        if self.proc.isalive():
            self.proc.terminate(force=True)
        try:
            self.proc.close(force=True)
        except Exception:
            pass


class SyncShell:
    """Drives a bash behind a LocalPty (bare PTY or ssh -tt)."""

    def __init__(self, pty: LocalPty) -> None:
        self.pty = pty
        self.n = 0

    def sync(self, timeout: float = 20) -> None:
        self.n += 1
        self.pty.write(f"printf '%s%s\\n' __SYNC_ {self.n}__\r".encode())
        self.pty.read_until(f"__SYNC_{self.n}__".encode(), timeout)

    def flood(self, path: Path, timeout: float) -> tuple[float, int]:
        self.n += 1
        cmd = f"cat {path}; printf '%s%s\\n' __FLOOD_ DONE_{self.n}__\r".encode()
        t0 = now()
        self.pty.write(cmd)
        got = self.pty.read_until(f"__FLOOD_DONE_{self.n}__".encode(), timeout)
        return now() - t0, got

    def echo(self, samples: int, warmup: int, gap: float) -> list[float]:
        pty = self.pty
        pty.write(b"cat\r")
        pty.read_until(b"cat\r\n", 10)
        time.sleep(0.3)
        pty.drain()
        lat: list[float] = []
        col = 0
        for i in range(warmup + samples):
            ch = LETTERS[i % 26]
            t0 = now()
            pty.write(ch)
            pty.read_until(ch, 10)
            dt = now() - t0
            if i >= warmup:
                lat.append(dt)
            col += 1
            if col >= 60:  # end the line (untimed) so cat never hits the line limit
                pty.write(b"\r")
                time.sleep(0.02)
                pty.drain()
                col = 0
            time.sleep(gap)
        pty.write(b"\r\x04")  # Ctrl-D at the start of a line ends cat
        time.sleep(0.05)
        pty.drain()
        self.sync()
        return lat


# --------------------------------------------------------------------------- OpenSSH


class PrivateSshd:
    """A throw-away sshd on 127.0.0.1:<free port> with its own keys and config."""

    def __init__(self, tmp: Path, cleanup: Cleanup) -> None:
        self.dir = tmp / "ssh"
        self.dir.mkdir(mode=0o700)
        self.port = free_port()
        self.key = self.dir / "user_key"
        for name in ("host_key", "user_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "tether-bench",
                            "-f", str(self.dir / name)], check=True, timeout=30)
        shutil.copy(self.dir / "user_key.pub", self.dir / "authorized_keys")
        cfg = self.dir / "sshd_config"
        cfg.write_text("\n".join([
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.dir / 'host_key'}",
            f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
            "PermitRootLogin yes",
            "UsePAM no",
            "StrictModes no",
            f"PidFile {self.dir / 'sshd.pid'}",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PrintMotd no",
            "PrintLastLog no",
            # sshd always runs `$SHELL -c <command>`; bash sources ~/.bashrc when it sees
            # SSH_CLIENT at SHLVL < 2. SHLVL=1 keeps root's rc files out of the measured
            # path, so OpenSSH runs the same fixed shell as the others.
            "SetEnv SHLVL=1",
            "",
        ]))
        # sshd insists on its privilege-separation directory (normally made by the init
        # script); create it if missing and leave it: another sshd may be using it
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        self.log = open(self.dir / "sshd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", str(cfg)],
                                     stdout=self.log, stderr=self.log)
        cleanup.add("sshd", self.stop)
        deadline = now() + 10
        while now() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("sshd exited: " + (self.dir / "sshd.log").read_text()[-1000:])
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH-"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not come up")

    def stop(self) -> None:
        stop_popen(self.proc)
        self.log.close()

    def client_argv(self, command: str) -> list[str]:
        return ["ssh", "-tt", "-F", "/dev/null", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "-i", str(self.key),
                "-p", str(self.port), "root@127.0.0.1", command]


# --------------------------------------------------------------------------- Tether


DRAINER = r"""
import os, select, signal, sys, time
fd, limit = int(sys.argv[1]), float(sys.argv[2])
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
total, deadline = 0, time.monotonic() + limit
while not stop and time.monotonic() < deadline:
    try:
        r, _, _ = select.select([fd], [], [], 0.1)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
    except OSError:
        break
print(total, flush=True)
"""


class Drainer:
    """A separate process that reads the customer's terminal (the client's PTY) continuously,
    as the customer's terminal emulator would."""

    def __init__(self, fd: int, limit: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", DRAINER, str(fd), str(limit)],
                                     pass_fds=(fd,), stdout=subprocess.PIPE, text=True)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate(timeout=5)
        try:
            return int(out.strip() or 0)
        except ValueError:
            return 0


async def ws_read_until(ws: aiohttp.ClientWebSocketResponse, marker: bytes,
                        timeout: float, stats: dict[str, int] | None = None) -> int:
    """Receive until ``marker`` is in the binary stream; returns bytes received
    (and counts the binary messages in ``stats["messages"]`` if given)."""
    deadline = now() + timeout
    total = 0
    keep = len(marker) - 1
    carry = b""
    while True:
        left = deadline - now()
        if left <= 0:
            raise TimeoutError(f"{marker!r} not seen on the viewer in {timeout:.0f} s")
        try:
            msg = await ws.receive(timeout=left)
        except TimeoutError:
            continue
        if msg.type == aiohttp.WSMsgType.BINARY:
            data = msg.data
            total += len(data)
            if stats is not None:
                stats["messages"] = stats.get("messages", 0) + 1
            if marker in data or (carry and marker in carry + data[:keep]):
                return total
            carry = data[-keep:]
        elif msg.type == aiohttp.WSMsgType.TEXT:
            continue
        else:
            raise ConnectionError(f"viewer closed ({ws.close_code}) while waiting for {marker!r}")


async def ws_drain(ws: aiohttp.ClientWebSocketResponse, quiet: float = 0.05,
                   limit: float = 2.0) -> None:
    deadline = now() + limit
    while now() < deadline:
        try:
            msg = await ws.receive(timeout=quiet)
        except TimeoutError:
            return
        if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
            raise ConnectionError("viewer closed")


TLS_ECHO_SERVER = r"""
import asyncio, ssl, sys
try:
    import uvloop
    uvloop.install()
except ImportError:
    pass
async def main():
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    async def echo(r, w):
        while True:
            data = await r.read(65536)
            if not data:
                break
            w.write(data)
        w.close()
    srv = await asyncio.start_server(echo, "127.0.0.1", 0, ssl=ctx)
    print(srv.sockets[0].getsockname()[1], flush=True)
    await asyncio.sleep(3600)
asyncio.run(main())
"""


class TlsHop:
    """Reference for (b): one TLS round trip to a minimal Python (uvloop) echo server on
    loopback, with the broker's certificate. A Tether keystroke makes two such round
    trips (technician ⇄ broker, broker ⇄ client) plus the PTY's echo."""

    name, label = "tls-hop", "1 TLS round trip (ref.)"

    def __init__(self, data: Path, cleanup: Cleanup) -> None:
        certs = data / "certs"
        self.ca = certs / "ca.pem"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", TLS_ECHO_SERVER, str(certs / "broker.pem"),
             str(certs / "broker-key.pem")], stdout=subprocess.PIPE, text=True)
        cleanup.add("TLS echo server", lambda: stop_popen(self.proc))
        assert self.proc.stdout is not None
        ready = select.select([self.proc.stdout], [], [], 20)[0]
        line = self.proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            raise RuntimeError("TLS echo server did not start")
        self.port = int(line)
        self.roots = {"echo-server": (self.proc.pid, "self"), "client(harness)": (-1, "self")}
        self.profile_pids: dict[str, int] = {}

    async def echo(self, samples: int, warmup: int, gap: float) -> list[float]:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.port, ssl=ctx), 20)
        lat: list[float] = []
        try:
            for i in range(warmup + samples):
                t0 = now()
                writer.write(LETTERS[i % 26])
                got = await asyncio.wait_for(reader.read(100), 10)
                dt = now() - t0
                if not got:
                    raise EOFError("TLS echo server closed")
                if i >= warmup:
                    lat.append(dt)
                await asyncio.sleep(gap)
        finally:
            writer.close()
        return lat

    async def close(self) -> int:
        stop_popen(self.proc)
        return 0


class TetherShell:
    """One support session with one shell channel, driven from the technician's side."""

    def __init__(self, bench: Bench, watch: bool) -> None:
        self.bench = bench
        self.watch = watch
        self.name = "tether-watch" if watch else "tether-nowatch"
        self.label = "Tether, watch on" if watch else "Tether, --no-watch"
        self.n = 0
        self.customer: Customer | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.drainer: Drainer | None = None
        self.sid = ""
        self.roots: dict[str, tuple[int, str]] = {}
        self.profile_pids: dict[str, int] = {}
        self.closed = False
        self.last_messages = 0

    async def open(self) -> None:
        b = self.bench
        assert b.broker is not None and b.tech is not None
        extra = ["--consent-timeout", "30", "--shell", FIXED_SHELL]
        if not self.watch:
            extra.append("--no-watch")
        self.customer = c = Customer(b.broker, *extra, tmp=b.tmp)
        c.child.delaybeforesend = None  # pexpect sleeps 50 ms before each send by default
        b.cleanup.add("tether-client", c.close)
        code = c.code()
        self.sid = sid = await b.tech.session_id(code)
        c.accept_session()
        await b.tech.wait_for(sid, lambda s: s["state"] == "active", "session consent")
        cid = await b.tech.open_shell(sid, 100, 30)
        c.accept_shell()
        await b.tech.wait_for(sid, lambda s: s["channels"][0]["state"] == "pairing", "shell yes")
        viewer = await b.tech.attach(sid, cid)
        self.ws = viewer.ws
        # from here on the customer's terminal is read by a separate process, continuously
        self.drainer = Drainer(c.child.child_fd, limit=3600)
        b.cleanup.add("drainer", self.drainer.stop)
        await self.sync()
        assert b.broker is not None and b.broker.proc is not None
        broker_pid, client_pid = b.broker.proc.pid, int(c.child.pid)
        self.roots = {"broker": (broker_pid, "self"), "client": (client_pid, "self"),
                      "bash+cat": (client_pid, "below"), "technician(harness)": (-1, "self")}
        if self.watch:
            self.roots["customer-terminal"] = (self.drainer.pid, "self")
        self.profile_pids = {"broker": broker_pid, "client": client_pid}

    async def keepalive(self) -> None:
        """Read the viewer socket briefly: aiohttp answers the broker's pings only while
        someone reads, and the broker drops a viewer that does not answer."""
        if self.ws is not None and not self.closed:
            await ws_drain(self.ws, quiet=0.001, limit=0.05)

    async def sync(self, timeout: float = 20) -> None:
        assert self.ws is not None
        self.n += 1
        await self.ws.send_bytes(f"printf '%s%s\\n' __SYNC_ {self.n}__\r".encode())
        await ws_read_until(self.ws, f"__SYNC_{self.n}__".encode(), timeout)

    async def flood(self, path: Path, timeout: float) -> tuple[float, int]:
        assert self.ws is not None
        self.n += 1
        cmd = f"cat {path}; printf '%s%s\\n' __FLOOD_ DONE_{self.n}__\r".encode()
        stats: dict[str, int] = {}
        t0 = now()
        await self.ws.send_bytes(cmd)
        got = await ws_read_until(self.ws, f"__FLOOD_DONE_{self.n}__".encode(), timeout, stats)
        self.last_messages = stats.get("messages", 0)
        return now() - t0, got

    async def echo(self, samples: int, warmup: int, gap: float) -> list[float]:
        ws = self.ws
        assert ws is not None
        await ws.send_bytes(b"cat\r")
        await ws_read_until(ws, b"cat\r\n", 10)
        await asyncio.sleep(0.3)
        await ws_drain(ws)
        lat: list[float] = []
        col = 0
        for i in range(warmup + samples):
            ch = LETTERS[i % 26]
            t0 = now()
            await ws.send_bytes(ch)
            await ws_read_until(ws, ch, 10)
            dt = now() - t0
            if i >= warmup:
                lat.append(dt)
            col += 1
            if col >= 60:
                await ws.send_bytes(b"\r")
                await asyncio.sleep(0.02)
                await ws_drain(ws)
                col = 0
            await asyncio.sleep(gap)
        await ws.send_bytes(b"\r\x04")
        await asyncio.sleep(0.05)
        await ws_drain(ws)
        await self.sync()
        return lat

    async def close(self) -> int:
        if self.closed:
            return 0
        self.closed = True
        b = self.bench
        assert b.tech is not None
        watched = self.drainer.stop() if self.drainer else 0
        if self.ws is not None:
            await self.ws.close()
        if self.sid:
            await b.tech.end(self.sid)
        if self.customer is not None:
            await asyncio.to_thread(self.customer.wait_exit)
        return watched


# --------------------------------------------------------------------------- profiling


class Profiler:
    """py-spy record (raw collapsed stacks) of a few PIDs while a block runs."""

    def __init__(self, outdir: Path | None, tag: str, pids: dict[str, int], rate: int) -> None:
        self.outdir = outdir
        self.tag = tag
        self.pids = pids
        self.rate = rate
        self.procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []

    def __enter__(self) -> Profiler:
        if self.outdir is None:
            return self
        exe = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or \
            shutil.which("py-spy")
        if not exe:
            log("py-spy not found; skipping the profile")
            self.outdir = None
            return self
        self.outdir.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            out = self.outdir / f"{self.tag}-{name}.txt"
            p = subprocess.Popen([exe, "record", "--pid", str(pid), "--rate", str(self.rate),
                                  "--nonblocking", "--format", "raw", "-o", str(out)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            self.procs.append((name, out, p))
        time.sleep(1.0)  # let py-spy attach before the work starts
        return self

    def __exit__(self, *exc: Any) -> None:
        for _, _, p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for name, out, p in self.procs:
            try:
                _, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                _, err = p.communicate(timeout=5)
            if out.exists():
                summarize_profile(out, f"{self.tag} / {name}")
            else:
                log(f"py-spy gave no profile for {name}: {err.decode(errors='replace')[-300:]}")


def _frame(f: str) -> str:
    """'func (path/to/file.py:123)' -> 'func (file.py)'."""
    m = re.match(r"(.*) \((.*?)(?::\d+)?\)$", f)
    if not m:
        return f
    fn, path = m.groups()
    parts = path.split("/")
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{fn} ({short})"


def summarize_profile(path: Path, title: str, top: int = 14) -> None:
    self_c: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";") if f]
        frames = [f for f in frames if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += n
        self_c[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    if not total:
        log(f"profile {title}: no samples")
        return
    print(f"\n  profile {title}: {total} active samples ({path})")
    print("    self %  function")
    for f, n in self_c.most_common(top):
        print(f"    {100 * n / total:5.1f}  {f}")
    print("    incl %  function")
    for f, n in incl.most_common(top + 10):
        print(f"    {100 * n / total:5.1f}  {f}")


# --------------------------------------------------------------------------- the benchmark


class SyncPath:
    """The bare PTY or OpenSSH: a LocalPty driven from a worker thread."""

    def __init__(self, name: str, label: str, pty: LocalPty,
                 roots: dict[str, tuple[int, str]]) -> None:
        self.name, self.label = name, label
        self.pty = pty
        self.sh = SyncShell(pty)
        self.roots = roots
        self.profile_pids: dict[str, int] = {}

    async def start(self) -> None:
        await asyncio.to_thread(self.sh.sync, 30)

    async def sync(self) -> None:
        await asyncio.to_thread(self.sh.sync)

    async def flood(self, path: Path, timeout: float) -> tuple[float, int]:
        return await asyncio.to_thread(self.sh.flood, path, timeout)

    async def echo(self, samples: int, warmup: int, gap: float) -> list[float]:
        return await asyncio.to_thread(self.sh.echo, samples, warmup, gap)

    def _close(self) -> None:
        try:
            self.pty.write(b"exit\r")
            deadline = now() + 5
            while self.pty.proc.isalive() and now() < deadline:
                self.pty.drain(0.05, 0.2)
        except OSError:
            pass
        finally:
            self.pty.close()

    async def close(self) -> int:
        if self.pty.proc.isalive():
            await asyncio.to_thread(self._close)
        return 0


class Bench:
    def __init__(self, args: argparse.Namespace, tmp: Path, cleanup: Cleanup) -> None:
        self.args = args
        self.tmp = tmp
        self.cleanup = cleanup
        self.flood_path = tmp / "f.txt"
        self.flood_bytes = int(args.flood_mb * MB)
        self.broker: Broker | None = None
        self.tech: Technician | None = None
        self.results: dict[str, Any] = {}
        self.cpu: dict[str, list[dict[str, float]]] = {}
        self.prof_dir = Path(args.profile) if args.profile else None

    @property
    def flood_timeout(self) -> float:
        return 60 + self.args.flood_mb * 1.5

    # --- the paths --------------------------------------------------------------------

    async def bare_pty(self) -> SyncPath:
        log("bare PTY: bash --norc --noprofile in a local PTY, read by this process")
        pty = LocalPty(FIXED_SHELL.split(), str(self.tmp), shell_env())
        self.cleanup.add("bare PTY", pty.close)
        path = SyncPath("bare-pty", "bare PTY (ceiling)", pty,
                        {"bash+cat": (pty.pid, "tree"), "reader(harness)": (-1, "self")})
        await path.start()
        return path

    async def openssh(self) -> SyncPath:
        sshd = await asyncio.to_thread(PrivateSshd, self.tmp, self.cleanup)
        ver = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
        log(f"OpenSSH: ssh -tt to a private sshd on 127.0.0.1:{sshd.port} ({ver})")
        pty = LocalPty(sshd.client_argv("exec " + FIXED_SHELL), str(self.tmp), shell_env())
        self.cleanup.add("ssh", pty.close)
        path = SyncPath("openssh", "OpenSSH ssh -tt", pty,
                        {"ssh": (pty.pid, "self"), "sshd+bash+cat": (sshd.proc.pid, "tree"),
                         "reader(harness)": (-1, "self")})
        await path.start()
        return path

    async def start_broker(self) -> None:
        if self.broker is not None:
            return
        password = "bench " + secrets.token_hex(8)
        b = Broker(self.tmp / "data", "--pair-timeout", "30", "--consent-wait", "40")
        await asyncio.to_thread(b.init)
        await asyncio.to_thread(b.add_user, "alice", password)
        await asyncio.to_thread(b.start)
        self.broker = b
        self.cleanup.add("tether-broker", b.stop)
        self.tech = Technician(b)
        status, _ = await self.tech.login("alice", password)
        if status != 200:
            raise RuntimeError(f"technician login failed: HTTP {status}")
        log(f"tether-broker pid {b.proc.pid if b.proc else '?'} at {b.url}")

    async def tether(self, watch: bool) -> TetherShell:
        await self.start_broker()
        ts = TetherShell(self, watch)
        log(f"Tether, watch mode {'on' if watch else 'off (--no-watch)'}: technician "
            "WebSocket ⇄ broker (TLS, recording) ⇄ tether-client ⇄ PTY")
        await ts.open()
        return ts

    async def settle(self, paths: list[Any],
                     sockets: tuple[aiohttp.ClientWebSocketResponse, ...] = ()) -> None:
        """wait_idle() that keeps open WebSockets answering the broker's pings meanwhile."""
        deadline = now() + self.args.wait_idle
        while True:
            busy = await asyncio.to_thread(machine_busy, 0.5)
            for p in paths:
                if isinstance(p, TetherShell):
                    await p.keepalive()
            for ws in sockets:
                await ws_drain(ws, quiet=0.001, limit=0.05)
            if busy <= IDLE_THRESHOLD:
                return
            if now() > deadline:
                warn_busy(busy)
                return

    # --- (a) flood and (b) echo, interleaved over the open paths ----------------------

    async def profile_round(self, paths: list[Any]) -> None:
        """--profile: one extra, unreported flood and echo run per Tether path under py-spy
        (py-spy itself takes CPU, so profiled runs are kept out of the figures)."""
        a = self.args
        for p in paths:
            if not p.profile_pids:
                continue
            log(f"  profiling {p.name} (not counted in the figures)")
            if a.flood_mb > 0:
                await self.settle(paths)
                with Profiler(self.prof_dir, p.name, p.profile_pids, a.profile_rate):
                    t, _ = await p.flood(self.flood_path, self.flood_timeout)
                await p.sync()
                log(f"  (profiled flood: {self.flood_bytes / MB / t:.1f} MB/s)")
            if a.echo_samples > 0:
                await self.settle(paths)
                with Profiler(self.prof_dir, p.name + "-echo", p.profile_pids,
                              a.profile_rate):
                    await p.echo(a.echo_samples, a.echo_warmup, a.echo_gap_ms / 1000)

    async def floods(self, paths: list[Any]) -> None:
        a = self.args
        log(f"(a) flood: cat of {a.flood_mb:g} MB until an end marker arrives; "
            f"{a.repeat} round(s) over {len(paths)} paths, interleaved")
        for r in range(a.repeat):
            for p in paths:
                await self.settle(paths)
                meter = CpuMeter(p.roots)
                meter.start()
                t, got = await p.flood(self.flood_path, self.flood_timeout)
                usage = meter.stop()
                await p.sync()
                mbs = self.flood_bytes / MB / t
                self.results.setdefault(f"flood:{p.name}", []).append(mbs)
                self.cpu.setdefault(p.name, []).append(dict(usage))
                msgs = getattr(p, "last_messages", 0)
                per = f", {msgs} WebSocket messages of {got / msgs / 1024:.0f} KiB avg" \
                    if msgs else ""
                log(f"  round {r + 1} {p.name:<15} {mbs:6.1f} MB/s in {t:5.2f} s "
                    f"({got / MB:.1f} MB on the wire{per}) CPU%: {fmt_cpu(usage)}")

    async def echoes(self, paths: list[Any]) -> None:
        a = self.args
        log(f"(b) echo: {a.echo_samples} keystrokes into `cat`, one at a time, "
            f"{a.echo_gap_ms:g} ms apart, after {a.echo_warmup} unmeasured ones")
        for p in paths:
            await self.settle(paths)
            meter = CpuMeter(p.roots)
            meter.start()
            lat = await p.echo(a.echo_samples, a.echo_warmup, a.echo_gap_ms / 1000)
            usage = meter.stop()
            self.cpu[p.name + "-echo"] = [dict(usage)]
            self.results[f"echo:{p.name}"] = lat
            log(f"  {p.name:<15} p50 {pct(lat, 50) * 1e3:.3f} ms, p99 {pct(lat, 99) * 1e3:.3f}"
                f" ms, max {max(lat) * 1e3:.3f} ms; CPU%: {fmt_cpu(usage)}")

    # --- (c) session open ---------------------------------------------------------------

    async def session_opens(self) -> None:
        a = self.args
        await self.start_broker()
        b, tech = self.broker, self.tech
        assert b is not None and tech is not None
        log(f"(c) session open x{a.opens}: POST /sessions → consent y → shell request → y → "
            "attach → first shell output")
        live = await tech.http.ws_connect(tech.url.replace("https", "wss") + "/ws/live")
        phases: dict[str, list[float]] = {k: [] for k in
                                          ("redeem", "consent", "shell_yes", "attach_output",
                                           "total")}

        async def wait_live(sid: str, pred: Callable[[dict[str, Any]], bool]) -> None:
            deadline = now() + 30
            while True:
                left = deadline - now()
                if left <= 0:
                    raise TimeoutError("no live update")
                try:
                    msg = await live.receive(timeout=left)
                except TimeoutError:
                    continue
                if msg.type != aiohttp.WSMsgType.TEXT:
                    raise ConnectionError("live socket closed")
                s = json.loads(msg.data).get("session") or {}
                if s.get("id") == sid and pred(s):
                    return

        for i in range(a.opens):
            if i % 10 == 0:
                await self.settle([], (live,))
            c = Customer(b, "--consent-timeout", "30", "--shell", FIXED_SHELL, tmp=self.tmp)
            c.child.delaybeforesend = None  # pexpect sleeps 50 ms before each send by default
            self.cleanup.add("tether-client", c.close)
            code = await asyncio.to_thread(c.code)
            errors: list[BaseException] = []

            def answer(c: Customer = c, errors: list[BaseException] = errors) -> None:
                try:  # the customer says y as soon as each prompt is on the screen
                    c.accept_session()
                    c.accept_shell()
                except BaseException as exc:  # reported below
                    errors.append(exc)

            th = threading.Thread(target=answer, daemon=True)
            th.start()
            t0 = now()
            async with tech.http.post(tech.url + "/sessions", allow_redirects=False,
                                      data={"code": code, "csrf": tech.csrf}) as r:
                loc = r.headers.get("Location", "")
                if r.status != 303 or "/sessions/" not in loc:
                    raise RuntimeError(f"redeem failed: HTTP {r.status} {loc}")
            sid = loc.rsplit("/", 1)[1]
            t1 = now()
            await wait_live(sid, lambda s: s["state"] == "active")
            t2 = now()
            status, body = await tech.api("POST", f"/api/sessions/{sid}/channels",
                                          {"kind": "terminal", "cols": 100, "rows": 30})
            if status != 202:
                raise RuntimeError(f"shell request failed: {status} {body}")
            cid = body["channel"]["id"]
            await wait_live(sid, lambda s: any(ch["id"] == cid and ch["state"] in
                                               ("pairing", "open") for ch in s["channels"]))
            t3 = now()
            status, body = await tech.api("POST", f"/api/sessions/{sid}/channels/{cid}/attach")
            if status != 200:
                raise RuntimeError(f"attach failed: {status} {body}")
            ws = await tech.http.ws_connect(tech.url.replace("https", "wss") +
                                            "/ws/relay/viewer", max_msg_size=0)
            await ws.send_str(json.dumps({"secret": body["secret"]}))
            deadline = now() + 30
            while True:
                msg = await ws.receive(timeout=max(0.01, deadline - now()))
                if msg.type == aiohttp.WSMsgType.BINARY and msg.data:
                    break
                if msg.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                    raise ConnectionError("viewer closed before the first output")
            t4 = now()
            for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                phases[k].append(v)
            await asyncio.to_thread(th.join, 10)
            if errors:
                raise errors[0]
            await ws.close()
            await tech.end(sid)
            await asyncio.to_thread(c.wait_exit)
        await live.close()
        self.results["open"] = phases
        for k, v in phases.items():
            log(f"  {k:>13}: p50 {pct(v, 50) * 1e3:7.1f} ms   p99 {pct(v, 99) * 1e3:7.1f} ms"
                f"   max {max(v) * 1e3:7.1f} ms")

    def shell_starts(self) -> None:
        """Time from spawning a shell in a PTY until it runs a command typed ahead.

        That is its start-up (rc files included) plus one command, i.e. when a
        person could type. A sample that takes longer than --shell-timeout ends
        that shell's series (reported as a timeout)."""
        a = self.args
        user_shell = pwd.getpwuid(os.getuid()).pw_shell or "/bin/sh"
        log(f"shell start: spawn in a PTY → a typed-ahead command has run, x{a.shell_starts} "
            f"(login shell of uid {os.getuid()}: {user_shell})")
        variants = {f"login shell ({user_shell} -l)": [user_shell, "-l"],
                    f"fixed shell ({FIXED_SHELL})": FIXED_SHELL.split()}
        home = os.path.expanduser("~")
        env = shell_env()
        for label, argv in variants.items():
            wait_idle(a.wait_idle)
            times: list[float] = []
            timed_out = False
            for n in range(a.shell_starts):
                t0 = now()
                pty = LocalPty(argv, home, env)
                try:
                    pty.write(f"printf '%s%s\\n' __READY_ {n}__\r".encode())
                    pty.read_until(f"__READY_{n}__".encode(), a.shell_timeout)
                    times.append(now() - t0)
                    pty.write(b"exit\r")  # a clean exit: never kill a shell mid-start-up
                    deadline = now() + 5
                    while pty.proc.isalive() and now() < deadline:
                        pty.drain(0.05, 0.2)
                except (TimeoutError, EOFError) as exc:
                    log(f"  {label}: sample {n + 1} gave no prompt in {a.shell_timeout:g} s "
                        f"({str(exc)[:200]})")
                    timed_out = True
                finally:
                    pty.close()
                if timed_out:
                    break
            self.results[f"shell:{label}"] = (times, timed_out)
            if times:
                log(f"  {label}: p50 {pct(times, 50) * 1e3:.1f} ms, "
                    f"p99 {pct(times, 99) * 1e3:.1f} ms ({len(times)} samples)"
                    + (", then a TIMEOUT" if timed_out else ""))

    # --- summary ----------------------------------------------------------------------

    def summary(self) -> None:
        r = self.results
        banner("SUMMARY")
        ceiling = r.get("flood:bare-pty")
        if any(k.startswith("flood:") for k in r):
            print(f"(a) terminal flood, cat of {self.args.flood_mb:g} MB; median of "
                  f"{self.args.repeat} interleaved round(s); ratio = median of the per-round "
                  "ratios to the bare PTY")
            print(f"    {'path':<22}{'MB/s':>7}{'min-max':>13}{'× bare':>8}   {'target':<9}"
                  "CPU % of one core (median)")
            for name, label, target in (
                    ("bare-pty", "bare PTY (ceiling)", ""),
                    ("openssh", "OpenSSH ssh -tt", "~0.65×"),
                    ("tether-watch", "Tether, watch on", "≥ 0.90×"),
                    ("tether-nowatch", "Tether, --no-watch", "≥ 0.90×")):
                v = r.get(f"flood:{name}")
                if not v:
                    continue
                ratio = (f"{median([x / c for x, c in zip(v, ceiling)]):.2f}×"
                         if ceiling else "-")
                cpu = self.cpu.get(name, [])
                cpu_txt = fmt_cpu({k: median([c[k] for c in cpu]) for k in cpu[0]}) if cpu else ""
                print(f"    {label:<22}{median(v):7.1f}{f'{min(v):.1f}-{max(v):.1f}':>13}"
                      f"{ratio:>8}   {target:<9}{cpu_txt}")
        if any(k.startswith("echo:") for k in r):
            print("(b) keystroke echo (one byte out, until it is echoed back)")
            print(f"    {'path':<26}{'p50 ms':>8}{'p99 ms':>9}{'max ms':>9}   target")
            for name, label, target in (
                    ("bare-pty", "bare PTY (kernel echo)", ""),
                    ("tls-hop", "1 TLS round trip (ref.)", ""),
                    ("openssh", "OpenSSH ssh -tt", ""),
                    ("tether-watch", "Tether, watch on", "p99 ≤ 0.8"),
                    ("tether-nowatch", "Tether, --no-watch", "p99 ≤ 0.8")):
                if f"echo:{name}" in r:
                    v = r[f"echo:{name}"]
                    print(f"    {label:<26}{pct(v, 50) * 1e3:8.3f}{pct(v, 99) * 1e3:9.3f}"
                          f"{max(v) * 1e3:9.3f}   {target}")
        if "open" in r:
            ph = r["open"]
            print(f"(c) session open, {len(ph['total'])} opens (ms)")
            print(f"    {'phase':<26}{'p50':>8}{'p99':>9}")
            for k, label in (("redeem", "POST /sessions"),
                             ("consent", "consent y → active"),
                             ("shell_yes", "shell request → y → ready"),
                             ("attach_output", "attach → first output"),
                             ("total", "TOTAL (target p99 ≤ 50)")):
                print(f"    {label:<26}{pct(ph[k], 50) * 1e3:8.1f}{pct(ph[k], 99) * 1e3:9.1f}")
        shells = [k for k in r if k.startswith("shell:")]
        if shells:
            print("    shell start alone (spawn in a PTY → typed-ahead command ran), ms:")
            for k in shells:
                times, timed_out = r[k]
                note = f"  then a timeout (> {self.args.shell_timeout:g} s)" if timed_out else ""
                if times:
                    print(f"    {k[6:]:<44}{pct(times, 50) * 1e3:8.1f}"
                          f"{pct(times, 99) * 1e3:9.1f}{note}")
                else:
                    print(f"    {k[6:]:<44}  no prompt within {self.args.shell_timeout:g} s")


def machine_info(loop_name: str) -> None:
    print_header(
        "terminal",
        f"python  : {platform.python_version()} ({sys.executable}); event loop {loop_name}",
        f"code    : {ROOT} at {git_head(clean='clean tether/')}",
        f"versions: aiohttp {aiohttp.__version__}; user {pwd.getpwuid(os.getuid()).pw_name}; "
        f"load average {load_average()}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    p.add_argument("--flood-mb", type=float, default=100, help="size of the cat'ed file (MB); "
                   "0 skips the flood")
    p.add_argument("--repeat", type=int, default=3, help="flood runs per path (median shown)")
    p.add_argument("--echo-samples", type=int, default=200, help="0 skips the echo test")
    p.add_argument("--echo-warmup", type=int, default=10, help="unmeasured echo samples first")
    p.add_argument("--echo-gap-ms", type=float, default=5, help="pause between keystrokes")
    p.add_argument("--opens", type=int, default=30, help="session opens; 0 skips")
    p.add_argument("--shell-starts", type=int, default=20, help="shell start samples; 0 skips")
    p.add_argument("--shell-timeout", type=float, default=15, metavar="S",
                   help="give up on a shell that has not started after S seconds")
    p.add_argument("--no-ssh", action="store_true", help="skip the OpenSSH comparison")
    p.add_argument("--only", choices=("all", "pty", "ssh", "tether", "open"), default="all",
                   help="run one part only (pty = bare-PTY ceiling)")
    p.add_argument("--profile", metavar="DIR", help="py-spy the broker and the client during "
                   "the first Tether flood of each mode; collapsed stacks go to DIR")
    p.add_argument("--profile-rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--wait-idle", type=float, default=30, metavar="S",
                   help="before each measured part, wait up to S seconds for the machine to be "
                   "idle (other work disturbs the figures; a warning is printed if it stays busy)")
    args = parse(p, argv, dir_help=None)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


async def amain(args: argparse.Namespace, tmp: Path, cleanup: Cleanup) -> None:
    bench = Bench(args, tmp, cleanup)
    part = args.only
    paths: list[Any] = []
    try:
        if part in ("all", "pty", "ssh", "tether") and (args.flood_mb > 0 or args.echo_samples):
            if args.flood_mb > 0:
                t = now()
                make_flood_file(bench.flood_path, bench.flood_bytes)
                log(f"flood file: {bench.flood_bytes / MB:g} MB of printable ASCII lines "
                    f"({now() - t:.1f} s to write)")
            paths.append(await bench.bare_pty())  # the ceiling, always beside the others
            if part in ("all", "ssh") and not args.no_ssh:
                paths.append(await bench.openssh())
            if part in ("all", "tether"):
                paths.append(await bench.tether(watch=True))
                paths.append(await bench.tether(watch=False))
            if bench.prof_dir is not None:
                await bench.profile_round(paths)
            if args.flood_mb > 0:
                await bench.floods(paths)
            if args.echo_samples > 0:
                refs: list[Any] = []
                if bench.broker is not None:
                    refs.append(TlsHop(bench.broker.data, cleanup))
                    paths.append(refs[0])
                await bench.echoes(paths)
            for p in paths:
                watched = await p.close()
                if isinstance(p, TetherShell) and p.watch:
                    log(f"  the customer's terminal (watch mode) received {watched / MB:.1f} MB"
                        f" of {args.repeat * bench.flood_bytes / MB:g} MB flooded")
            paths.clear()
        if part in ("all", "open") and args.opens > 0:
            await bench.session_opens()
        if part in ("all", "open") and args.shell_starts > 0:
            await asyncio.to_thread(bench.shell_starts)
    finally:
        for p in paths:
            try:
                await p.close()
            except Exception:
                pass
        if bench.tech is not None:
            await bench.tech.close()
    bench.summary()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine_info(event_loop(" (broker and harness)"))
    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-"))
    cleanup = Cleanup()
    return run(tmp, args.keep, lambda: asyncio.run(amain(args, tmp, cleanup)),
               stop=cleanup.run)


if __name__ == "__main__":
    sys.exit(main())
