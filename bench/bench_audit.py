#!/usr/bin/env python3
"""Audit log benchmark for Tether: append throughput and `audit verify` time.

Run from the repository root with the dev venv's Python::

    /tmp/venv/bin/python bench/bench_audit.py            # defaults: 10 s runs, 1,000,000 events
    /tmp/venv/bin/python bench/bench_audit.py --help

Appends go through the real ``AuditLog`` over the real ``Store`` (SQLite WAL,
``synchronous=FULL``) in a temporary data directory; ``audit verify`` is the
real ``tether-broker`` command, run as a subprocess on a data directory made
by ``tether-broker init`` and filled with correctly chained events. The
benchmark prints figures; it never passes or fails on time. Nothing listens on
the network. See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import platform
import pstats
import random
import resource
import secrets
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite
from common import (
    INSERT_AUDIT,
    ROOT,
    arg_parser,
    audit_head,
    audit_row,
    event_loop,
    git_head,
    load_average,
    log,
    now,
    parse,
    pct,
    print_header,
    run,
)

from tether.broker import certs
from tether.broker.audit.checkpoints import CHECKPOINT_FILE
from tether.broker.audit.log import AuditLog
from tether.broker.store.sqlite import Store, now_us
from tether.protocol.checkpoint import Checkpoint

CLI = [sys.executable, "-m", "tether.broker.cli"]
APPEND_TARGET = 5_000  # events/s, concurrent producers
VERIFY_TARGET = 10.0  # s for the default 1,000,000 events
INSERT_BATCH = 50_000
TEXT = "technician ran a command in the shell channel; output recorded to the cast"


# --------------------------------------------------------------------------- helpers


def mount_of(path: Path) -> str:
    """'<fstype> on <mount point>' for the file system holding ``path``."""
    best = ("?", "")
    for line in Path("/proc/mounts").read_text().splitlines():
        _, mnt, fstype, *_ = line.split()
        if path.is_relative_to(mnt) and len(mnt) >= len(best[1]):
            best = (fstype, mnt)
    return f"{best[0]} on {best[1]}"


def init_data(data: Path) -> None:
    """``tether-broker init --data DIR``: certificates, the audit key, an empty database."""
    subprocess.run([*CLI, "init", "--data", str(data)], check=True, capture_output=True,
                   timeout=120)


def machine_info(tmp: Path, loop_name: str) -> None:
    print_header(
        "audit",
        f"python  : {platform.python_version()} ({sys.executable}); event loop {loop_name}",
        f"sqlite  : {sqlite3.sqlite_version} (aiosqlite {aiosqlite.__version__}); "
        f"data in {tmp} ({mount_of(tmp)})",
        f"code    : {ROOT} at {git_head(clean='clean tether/')}",
        f"load    : {load_average()}")


# --------------------------------------------------------------------------- append


class CountingStore(Store):
    """The real Store; also records how many events each audit transaction held."""

    batches: list[int]

    async def append_audit(self, rows: Any, *args: Any, **kwargs: Any) -> None:
        rows = list(rows)
        self.batches.append(len(rows))
        await super().append_audit(rows, *args, **kwargs)


class Quota:
    """Hands out events until ``events`` are taken or, with no count, until ``seconds``."""

    def __init__(self, events: int, seconds: float) -> None:
        self.events = events
        self.deadline = float("inf") if events else now() + seconds
        self.taken = 0

    def take(self) -> bool:
        if (self.events and self.taken >= self.events) or now() >= self.deadline:
            return False
        self.taken += 1
        return True


@dataclass
class AppendRun:
    label: str
    producers: int
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    done_at: list[float] = field(default_factory=list)  # completion offsets from the start
    batches: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.wall if self.wall else 0.0

    def windows(self) -> list[int]:
        """Events completed in each full second of the run."""
        counts = [0] * int(self.wall)
        for t in self.done_at:
            if int(t) < len(counts):
                counts[int(t)] += 1
        return counts


async def producer(audit: AuditLog, quota: Quota, run: AppendRun, t0: float) -> None:
    session_id = "s_" + secrets.token_urlsafe(12)
    n = 0
    while quota.take():
        t = now()
        await audit.append("bench.event", actor="bench", session_id=session_id,
                           ip="127.0.0.1", n=n, text=TEXT)
        done = now()
        run.latencies.append(done - t)
        run.done_at.append(done - t0)
        n += 1


def make_audit(store: Store, data: Path, every: int) -> AuditLog:
    """The AuditLog the broker makes (app.py): signed by the data directory's audit key."""
    if not every:
        return AuditLog(store)
    return AuditLog(store, certs.load_audit_key(data / "certs"), data=data, every=every)


async def append_run(data: Path, run: AppendRun, args: argparse.Namespace) -> AppendRun:
    init_data(data)
    store = await CountingStore.open(data / "tether.db")
    store.batches = run.batches
    audit = make_audit(store, data, args.checkpoint_every)
    await audit.start()
    try:
        quota = Quota(args.events, args.seconds)
        t0 = now()
        await asyncio.gather(*(producer(audit, quota, run, t0) for _ in range(run.producers)))
        run.wall = now() - t0
    finally:
        await audit.close()
        await store.close()
    return run


def report_append(run: AppendRun, target: str) -> str:
    lat = run.latencies
    windows = run.windows()
    spread = f", 1-s windows {min(windows)}-{max(windows)}" if len(windows) >= 2 else ""
    log(f"  {run.label}: {len(lat)} events in {run.wall:.2f} s = {run.rate:,.0f} events/s"
        f"{spread}")
    log(f"    latency p50 {pct(lat, 50) * 1e3:.2f} ms, p99 {pct(lat, 99) * 1e3:.2f} ms, "
        f"max {max(lat) * 1e3:.2f} ms; {len(run.batches)} commits "
        f"({len(run.batches) / run.wall:,.0f}/s), {len(lat) / len(run.batches):.1f} "
        f"events/commit (max {max(run.batches)})")
    return (f"    {run.label:<28}{run.rate:>10,.0f}{pct(lat, 50) * 1e3:>9.2f}"
            f"{pct(lat, 99) * 1e3:>9.2f}{len(lat) / len(run.batches):>10.1f}   {target}").rstrip()


async def bench_append(args: argparse.Namespace, tmp: Path) -> list[str]:
    scope = f"{args.events} events" if args.events else f"{args.seconds:g} s"
    signed = (f"checkpoint every {args.checkpoint_every} events" if args.checkpoint_every
              else "no checkpoints")
    lines = [f"(1) audit append, AuditLog + Store (WAL, synchronous=FULL, {signed}), "
             f"{scope} per run",
             f"    {'producers':<28}{'events/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
             f"{'ev/commit':>10}   target"]
    for label, producers, target in (
            (f"{args.producers} concurrent", args.producers, f"≥ {APPEND_TARGET:,}"),
            ("1 sequential (worst case)", 1, "")):
        log(f"append: {label} producer(s) awaiting each append, {scope}, {signed}")
        run = await append_run(tmp / f"append-{producers}", AppendRun(label, producers), args)
        lines.append(report_append(run, target))
    return lines


# --------------------------------------------------------------------------- verify


def token(rnd: random.Random) -> str:
    return "".join(rnd.choices("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                               k=16))


VALUES: dict[str, Callable[[random.Random], Any]] = {
    "os": lambda r: r.choice(["Ubuntu 24.04", "Debian 12", "Fedora 40", "macOS 14.5"]),
    "version": lambda r: r.choice(["0.1.0", "0.1.1", "0.2.0"]),
    "machine": lambda r: f"{r.choice(['laptop', 'desk', 'pos', 'kiosk'])}-{r.randrange(999):03}",
    "user": lambda r: r.choice(["alice", "bob", "carol", "dave", "erin"]),
    "ttl_s": lambda r: 600.0,
    "role": lambda r: r.choice(["technician", "admin", "auditor"]),
    "user_agent": lambda r: r.choice(["Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
                                      "Mozilla/5.0 (Windows NT 10.0) Chrome/126.0"]),
    "client_ip": lambda r: f"203.0.113.{r.randrange(1, 255)}",
    "client_os": lambda r: r.choice(["Ubuntu 24.04", "Debian 12", "macOS 14.5"]),
    "channel": lambda r: "c_" + token(r),
    "kind": lambda r: r.choice(["shell", "shell", "shell", "files", "screen"]),
    "cols": lambda r: r.choice([80, 120, 160, 211]),
    "rows": lambda r: r.choice([24, 40, 50]),
    "path": lambda r: f"recordings/{token(r)}.cast",
    "pair_ms": lambda r: round(r.uniform(2, 400), 1),
    "reason": lambda r: r.choice(["closed by the technician", "closed by the customer",
                                  "idle timeout", "the customer's connection dropped",
                                  "ended by the customer", "wrong code"]),
    "bytes_in": lambda r: r.randrange(10**7),
    "bytes_out": lambda r: r.randrange(10**8),
    "duration_s": lambda r: round(r.uniform(1, 7200), 3),
    "channels": lambda r: r.randrange(1, 6),
    "count": lambda r: r.randrange(1, 11),
    "window_s": lambda r: 600.0,
}

# action, actor ("tech" = a technician's name), weight, has a session, has an ip, detail keys
ACTIONS: list[tuple[str, str, int, bool, bool, tuple[str, ...]]] = [
    ("client.connected", "client", 6, False, True, ("os", "version", "machine")),
    ("code.issued", "client", 8, False, True, ("ttl_s", "os", "version")),
    ("user.signed_in", "tech", 3, False, True, ("role", "user_agent", "user")),
    ("code.redeem_failed", "tech", 1, False, True, ("count", "window_s", "reason")),
    ("client.disconnected", "client", 5, False, True, ("reason", "os", "version", "duration_s")),
    ("session.claimed", "tech", 5, True, True, ("client_ip", "client_os", "user")),
    ("session.consented", "customer", 5, True, True, ("machine", "os", "user")),
    ("channel.requested", "tech", 8, True, True, ("channel", "kind", "cols", "rows")),
    ("channel.consented", "customer", 8, True, True, ("channel", "kind", "cols", "rows")),
    ("recording.started", "broker", 8, True, False, ("channel", "kind", "path")),
    ("channel.agent_connected", "client", 8, True, True, ("channel", "kind", "version")),
    ("channel.viewer_attached", "tech", 10, True, True, ("channel", "kind", "user_agent")),
    ("channel.opened", "broker", 8, True, False, ("channel", "kind", "pair_ms")),
    ("channel.closed", "tech", 8, True, False,
     ("channel", "kind", "reason", "bytes_in", "bytes_out", "duration_s")),
    ("session.ended", "tech", 5, True, True, ("reason", "duration_s", "channels", "bytes_out")),
]


class EventSource:
    """Deterministic, realistic audit events: mixed actions over ~50 live sessions."""

    def __init__(self, n: int, seed: int = 1) -> None:
        self.rnd = random.Random(seed)
        self.sessions = ["s_" + token(self.rnd) for _ in range(50)]
        self.ts = now_us() - n * 20_000
        self.weights = [a[2] for a in ACTIONS]

    def next(self) -> dict[str, Any]:
        r = self.rnd
        action, actor, _, scoped, has_ip, keys = r.choices(ACTIONS, self.weights)[0]
        if scoped and r.random() < 0.03:  # a session ends, a new one starts
            self.sessions[r.randrange(len(self.sessions))] = "s_" + token(r)
        self.ts += r.randrange(1, 40_000)
        return {
            "ts_us": self.ts,
            "session_id": r.choice(self.sessions) if scoped else None,
            "actor": VALUES["user"](r) if actor == "tech" else actor,
            "action": action,
            "ip": f"198.51.100.{r.randrange(1, 255)}" if has_ip else None,
            "detail": {k: VALUES[k](r) for k in keys},
        }


class Chainer:
    """Chains events as AuditLog._flush does, and signs the head every ``every`` events."""

    def __init__(self, db: sqlite3.Connection, data: Path, every: int) -> None:
        self.seq, self.head = audit_head(db)
        self.every = every
        self.key = certs.load_audit_key(data / "certs") if every else None
        self.checkpoints: list[tuple[int, str]] = []

    def rows(self, source: EventSource, count: int) -> list[tuple[Any, ...]]:
        """``count`` rows in the layout AuditLog._flush writes."""
        rows = []
        for _ in range(count):
            event = source.next()
            self.seq += 1
            event["seq"] = self.seq
            row = audit_row(event, self.head)
            self.head = row[-1]
            rows.append(row)
            if self.every and self.seq % self.every == 0:
                self.sign(event["ts_us"], "events")
        return rows

    def sign(self, ts_us: int, reason: str) -> None:
        if self.key:
            cp = Checkpoint.make(self.key, self.seq, self.head, ts_us, reason)
            self.checkpoints.append((self.seq, cp.to_json()))


def fill_audit(data: Path, n: int, every: int) -> int:
    """Append ``n`` chained events and their checkpoints; returns the checkpoint count.

    Checkpoints go where the broker puts them: the database and audit-checkpoints.jsonl.
    """
    db = sqlite3.connect(data / "tether.db")
    try:
        db.execute("PRAGMA synchronous=OFF")  # generation only; verify reads a checkpointed file
        chainer = Chainer(db, data, every)
        source = EventSource(n)
        for start in range(0, n, INSERT_BATCH):
            rows = chainer.rows(source, min(INSERT_BATCH, n - start))
            with db:
                db.executemany(INSERT_AUDIT, rows)
        if every and chainer.seq % every:
            chainer.sign(now_us(), "shutdown")
        with db:
            db.executemany("INSERT INTO audit_checkpoints (seq, line) VALUES (?, ?)",
                           chainer.checkpoints)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    if chainer.checkpoints:
        with (data / CHECKPOINT_FILE).open("a") as f:
            f.writelines(line + "\n" for _, line in chainer.checkpoints)
    return len(chainer.checkpoints)


def db_bytes(data: Path) -> int:
    return sum(p.stat().st_size for p in data.glob("tether.db*"))


def run_verify(data: Path) -> tuple[float, float, str]:
    """(wall s, CPU s, output) of one ``tether-broker audit verify``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = now()
    out = subprocess.run([*CLI, "audit", "verify", "--data", str(data)], capture_output=True,
                         text=True, timeout=600)
    wall = now() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    lines = (out.stdout + out.stderr).strip().splitlines()
    return wall, cpu, " | ".join(lines) + f" (exit {out.returncode})"


def profile_verify(data: Path, top: int = 15) -> None:
    """One more verify under cProfile; prints the top functions by own and inclusive time."""
    out = data.parent / "verify.prof"
    t0 = now()
    subprocess.run([sys.executable, "-m", "cProfile", "-o", str(out), *CLI[1:], "audit",
                    "verify", "--data", str(data)], check=True, capture_output=True, timeout=1200)
    log(f"  profiled run: {now() - t0:.2f} s under cProfile (slower than the runs above)")
    for key in ("tottime", "cumulative"):
        text = io.StringIO()
        pstats.Stats(str(out), stream=text).sort_stats(key).print_stats(top)
        body = text.getvalue()
        print(f"--- top {top} by {key}\n" + body[body.index("   ncalls"):].rstrip(), flush=True)


def bench_verify(args: argparse.Namespace, tmp: Path) -> list[str]:
    data = tmp / "verify"
    n = args.verify_events
    log(f"verify: tether-broker init --data {data}")
    init_data(data)
    t0 = now()
    signed = fill_audit(data, n, args.checkpoint_every)
    gen = now() - t0
    size = db_bytes(data)
    log(f"  generated {n:,} chained events and {signed:,} signed checkpoints in {gen:.1f} s "
        f"(not part of verify); database {size / 1e6:.1f} MB ({size / max(n, 1):.0f} "
        "bytes/event)")
    walls = []
    for i in range(args.verify_runs):
        wall, cpu, output = run_verify(data)
        walls.append(wall)
        log(f"  run {i + 1}: {wall:.2f} s wall, {cpu:.2f} s CPU: {output}")
    if args.profile:
        profile_verify(data)
    target = f"< {VERIFY_TARGET:g} s" if n == 1_000_000 else f"(< {VERIFY_TARGET:g} s for 1M)"
    return [f"(2) tether-broker audit verify, {n:,} events, {signed:,} checkpoints, database "
            f"{size / 1e6:.1f} MB (generation {gen:.1f} s, not counted)",
            f"    best of {len(walls)}: {min(walls):.2f} s ({n / min(walls):,.0f} events/s); "
            f"runs {', '.join(f'{w:.2f}' for w in walls)} s   target {target}"]


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    p.add_argument("--events", type=int, default=0,
                   help="events per append run (0: run for --seconds instead)")
    p.add_argument("--seconds", type=float, default=10, help="length of each append run")
    p.add_argument("--producers", type=int, default=200, help="concurrent append producers")
    p.add_argument("--verify-events", type=int, default=1_000_000,
                   help="events in the log that audit verify checks")
    p.add_argument("--checkpoint-every", type=int, default=100, metavar="N",
                   help="sign the audit head every N events, as `serve --checkpoint-every` "
                   "does (0: no audit key, no checkpoints)")
    p.add_argument("--verify-runs", type=int, default=3, help="timed verify runs (best shown)")
    p.add_argument("--profile", action="store_true",
                   help="after the timed runs, cProfile one verify and print the top functions")
    p.add_argument("--only", choices=("all", "append", "verify"), default="all",
                   help="run one part only")
    args = parse(p, argv, dir_help="parent of the temporary data directories (the file "
                 "system's fsync cost is part of the append figures; default: $TMPDIR)")
    if args.producers < 1 or args.verify_runs < 1 or args.checkpoint_every < 0:
        p.error("--producers and --verify-runs must be at least 1, --checkpoint-every >= 0")
    return args


def bench(args: argparse.Namespace, tmp: Path) -> list[str]:
    summary: list[str] = []
    if args.only in ("all", "append"):
        summary += asyncio.run(bench_append(args, tmp))
    if args.only in ("all", "verify"):
        summary += bench_verify(args, tmp)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-audit-", dir=args.dir))
    machine_info(tmp, event_loop())
    return run(tmp, args.keep, lambda: bench(args, tmp))


if __name__ == "__main__":
    sys.exit(main())
