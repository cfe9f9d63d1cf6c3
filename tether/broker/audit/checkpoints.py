"""Where signed checkpoints go besides the database.

* ``audit-checkpoints.jsonl`` in the data directory, one checkpoint per line,
  appended and fsynced (never rewritten).
* Off the machine, as each is made: an HTTPS URL (one JSON POST each) or a
  syslog collector (RFC 5424 over UDP, facility "log audit"). Root on the
  broker can rewrite its own disk, not a copy already held elsewhere.

Delivery off the machine never blocks the audit log: checkpoints queue (up to
``QUEUE``) and are retried in order with backoff; what cannot be delivered is
said in the server log (the checkpoint itself is still in the database and in
the file).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from pathlib import Path

import aiohttp

from ...protocol.checkpoint import Checkpoint

CHECKPOINT_FILE = "audit-checkpoints.jsonl"
QUEUE = 10_000
log = logging.getLogger("tether.audit")


def append_line(path: Path, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def syslog_message(cp: Checkpoint, hostname: str) -> bytes:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(cp.ts_us / 1e6))
    # PRI 110 = facility 13 (log audit) * 8 + severity 6 (informational)
    return f"<110>1 {stamp} {hostname} tether-broker - checkpoint - {cp.to_json()}".encode()


class Forwarder:
    """Sends each checkpoint to ``url`` (HTTPS POST) and/or ``syslog`` (host, port)."""

    def __init__(self, url: str | None = None, ca_file: Path | None = None,
                 syslog: tuple[str, int] | None = None) -> None:
        self.url, self.syslog = url, syslog
        self._ssl = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._queue: asyncio.Queue[Checkpoint] = asyncio.Queue(QUEUE)
        self._task: asyncio.Task[None] | None = None
        self._http: aiohttp.ClientSession | None = None
        self._udp: socket.socket | None = None
        self._hostname = socket.gethostname()[:64] or "-"
        self._sending = 0  # checkpoints taken off the queue and not yet delivered

    @property
    def enabled(self) -> bool:
        return bool(self.url or self.syslog)

    def __call__(self, cp: Checkpoint) -> None:
        if self._queue.full():
            log.error("checkpoint forwarding queue full: checkpoint %d not forwarded", cp.seq)
            return
        self._queue.put_nowait(cp)

    async def start(self) -> None:
        if self.url:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        if self.syslog:
            family = socket.AF_INET6 if ":" in self.syslog[0] else socket.AF_INET
            self._udp = socket.socket(family, socket.SOCK_DGRAM)
            self._udp.setblocking(False)
        self._task = asyncio.create_task(self._run(), name="checkpoint-forwarder")

    async def close(self, grace: float = 5.0) -> None:
        """Deliver what is queued (for at most ``grace`` seconds), then stop."""
        if self._task:
            try:
                await asyncio.wait_for(self._queue.join(), grace)
            except TimeoutError:
                log.error("%d checkpoints were not forwarded before shutdown",
                          self._queue.qsize() + self._sending)
            self._task.cancel()
        if self._http:
            await self._http.close()
        if self._udp:
            self._udp.close()

    async def _run(self) -> None:
        while True:
            cp = await self._queue.get()
            self._sending = 1
            delay = 1.0
            while not await self._send(cp):
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
            self._sending = 0
            self._queue.task_done()

    async def _send(self, cp: Checkpoint) -> bool:
        try:
            if self._udp and self.syslog:
                self._udp.sendto(syslog_message(cp, self._hostname), self.syslog)
            if self._http and self.url:
                async with self._http.post(self.url, data=cp.to_json(), ssl=self._ssl,
                                           headers={"Content-Type": "application/json"}) as r:
                    if r.status >= 300:
                        log.warning("checkpoint %d refused by the collector (HTTP %d)",
                                    cp.seq, r.status)
                        return False
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            log.warning("checkpoint %d not delivered: %s", cp.seq, exc.__class__.__name__)
            return False
        return True
