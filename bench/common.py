"""Helpers the benchmark scripts share.

The scripts run as ``python bench/bench_x.py``, so this folder is ``sys.path[0]``
and ``import common`` finds this module. Importing it also puts the repository
root on ``sys.path``, so that ``tests.helpers`` imports after it.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tether.protocol.canon import GENESIS, chain, event_digest  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")
now = time.perf_counter

#: The statement AuditLog._flush writes an event with; the row is what audit_row() makes.
INSERT_AUDIT = ("INSERT INTO audit_events (seq, ts_us, session_id, actor, action, ip, detail,"
                " prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


# --------------------------------------------------------------------------- figures


def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation (numpy's default)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def banner(title: str) -> None:
    """A blank line, then ``title`` between two rules (the summary's heading)."""
    print("\n" + "=" * 78)
    print(title)
    print("=" * 78)


# --------------------------------------------------------------------------- the machine


def git_head(dirs: tuple[str, ...] = ("tether",), clean: str = "clean") -> str:
    """The short commit checked out, and whether ``dirs`` have uncommitted changes."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--", *dirs],
                               capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return "?"
    if dirty.strip():
        return head + " + uncommitted changes in " + " or ".join(f"{d}/" for d in dirs)
    return f"{head} ({clean})"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def print_header(name: str, *lines: str, machine: str = "") -> None:
    """The header every benchmark starts with: the command, the machine (``machine`` is
    added to its line), then the script's own ``lines``."""
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.machine())
    print("=" * 78)
    print(f"Tether {name} benchmark")
    print(f"command : cd {shlex.quote(os.getcwd())} && "
          f"{shlex.join([sys.executable, *sys.argv])}")
    print(f"machine : nproc {len(os.sched_getaffinity(0))} ({os.cpu_count()} online), {model}, "
          f"{platform.system()} {platform.release()}{machine}")
    for line in lines:
        print(line)
    print("=" * 78, flush=True)


def event_loop(note: str = "") -> str:
    """Install uvloop as the broker does, if it is installed; return the loop's name."""
    try:
        import uvloop
    except ImportError:
        return "asyncio (uvloop not installed)"
    uvloop.install()
    return f"uvloop {uvloop.__version__}{note}"


def proc_times(pid: int) -> tuple[int, float, float] | None:
    """(ppid, own CPU s, reaped children's CPU s) from /proc, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    fields = raw[raw.rindex(b")") + 2:].split()
    # fields[0] is the state (field 3 of proc(5)); utime is field 14 → fields[11]
    own = (int(fields[11]) + int(fields[12])) / CLK
    reaped = (int(fields[13]) + int(fields[14])) / CLK
    return int(fields[1]), own, reaped


def cpu_seconds(pid: int, mode: str = "self") -> float:
    """CPU seconds so far: of this process ("self", all its threads); of it and every live
    descendant plus the children they reaped ("tree"); or of the tree without the
    process's own ("below"). pid -1 is this benchmark process."""
    if pid == -1:
        return time.process_time()
    if mode == "self":
        st = proc_times(pid)
        return st[1] if st else 0.0
    stats: dict[int, tuple[int, float, float]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = proc_times(int(name))
            if st:
                stats[int(name)] = st
    children: dict[int, list[int]] = collections.defaultdict(list)
    for p, (ppid, _, _) in stats.items():
        children[ppid].append(p)
    total, todo = 0.0, [pid]
    seen: set[int] = set()
    while todo and len(seen) < 10_000:
        p = todo.pop()
        if p in seen or p not in stats:
            continue
        seen.add(p)
        total += stats[p][1] + stats[p][2]
        todo.extend(children.get(p, ()))
    if mode == "below" and pid in stats:
        total -= stats[pid][1]
    return total


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:9]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


# --------------------------------------------------------------------------- the audit log


def audit_head(db: sqlite3.Connection) -> tuple[int, bytes]:
    """(seq, hash) of the last event in the database, (0, GENESIS) if there is none."""
    row = db.execute("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1").fetchone()
    return (row[0], row[1]) if row else (0, GENESIS)


def audit_row(event: dict[str, Any], prev: bytes) -> tuple[Any, ...]:
    """The row AuditLog._flush writes for ``event`` (with its seq) chained onto ``prev``;
    its last item is the event's hash, the next event's ``prev``."""
    detail = json.dumps(event["detail"], sort_keys=True, separators=(",", ":"),
                        ensure_ascii=False)
    return (event["seq"], event["ts_us"], event["session_id"], event["actor"],
            event["action"], event["ip"], detail, prev, chain(prev, event_digest(event)))


# --------------------------------------------------------------------------- main


def arg_parser(doc: str) -> argparse.ArgumentParser:
    """A parser described by the first paragraph of the script's docstring."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)


def parse(p: argparse.ArgumentParser, argv: list[str] | None,
          dir_help: str | None = "parent of the temporary data directory") -> argparse.Namespace:
    """Add --dir (unless ``dir_help`` is None) and --keep, the last options; parse."""
    if dir_help is not None:
        p.add_argument("--dir", type=Path, help=dir_help)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return p.parse_args(argv)


def run(tmp: Path, keep: bool, work: Callable[[], list[str] | None],
        stop: Callable[[], object] = lambda: None) -> int:
    """Run ``work``; whatever happens, ``stop`` what it started and remove ``tmp`` (with
    ``keep``, say where it is). Then the lines ``work`` returned, under SUMMARY, and the
    time it took. Returns the exit status (130 on Ctrl-C)."""
    t0 = now()
    try:
        summary = work()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        stop()
        if keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if summary is not None:
        banner("SUMMARY")
        for line in summary:
            print(line)
    print(f"(benchmark took {now() - t0:.0f} s)")
    return 0
