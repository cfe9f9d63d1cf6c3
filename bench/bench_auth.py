#!/usr/bin/env python3
"""Sign-in benchmark for Tether: argon2 cost, and a flood of wrong passwords.

Run from the repository root with the dev venv's Python::

    /tmp/venv/bin/python bench/bench_auth.py             # defaults: ~1 min
    /tmp/venv/bin/python bench/bench_auth.py --help

(1) How long one argon2id verification takes here, with the broker's own
parameters (``tether.broker.auth.passwords.Passwords``): in the calling thread, and
through the broker's thread pool as a sign-in does.

(2) A real ``tether-broker serve`` on 127.0.0.1 gets a flood of concurrent
wrong-password sign-ins (real HTTPS, real form with its CSRF token) from a
separate process, while this process measures what a legitimate user sees:
how long their own sign-in takes (with its real TOTP code) and how fast a
signed-in ``GET /dashboard`` stays (the event loop must not starve). The
flood comes from many loopback source addresses (127.x.y.z), each trying a
few never-repeated names, so that the per-address and per-name delays do not
stop it and every try costs the broker a real argon2 verification (mode
``distributed``); mode ``one-ip`` sends the same flood from one address, which
the per-address delays soon turn into cheap refusals. The benchmark prints
figures; it never passes or fails on time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import secrets
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from common import (
    ROOT,
    arg_parser,
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

from tests.helpers import Broker
from tether.broker.auth.passwords import Passwords

PASSWORD = "bench " + secrets.token_hex(8)
CSRF = re.compile(r'name="csrf-token" content="([^"]+)"')
MS = 1000.0


# --------------------------------------------------------------------------- helpers


def summary_ms(values: list[float]) -> str:
    if not values:
        return "n=0"
    return (f"p50 {pct(values, 50) * MS:7.1f}  p95 {pct(values, 95) * MS:7.1f}  "
            f"max {max(values) * MS:7.1f} ms  (n={len(values)})")


def machine_info(tmp: Path) -> None:
    print_header("sign-in",
                 f"code    : {ROOT} at {git_head()}; data in {tmp}",
                 f"load    : {load_average()}",
                 machine=f", Python {platform.python_version()}")


# --------------------------------------------------------------------------- (1) argon2


async def bench_argon2(runs: int) -> list[str]:
    p = Passwords()
    try:
        t = now()
        stored = p.hash_sync(PASSWORD)
        hash_time = now() - t
        direct, pooled, unknown = [], [], []
        p._verify(stored, PASSWORD)  # warm up (page faults of the 46 MiB)
        for _ in range(runs):
            t = now()
            p._verify(stored, "wrong password")
            direct.append(now() - t)
        for _ in range(runs):
            t = now()
            await p.verify(stored, "wrong password")
            pooled.append(now() - t)
        for _ in range(runs):
            t = now()
            await p.verify(None, "wrong password")
            unknown.append(now() - t)
    finally:
        p.close()
    params = stored.split("$")[3]
    lines = [
        f"argon2id {params}: one hash {hash_time * MS:.1f} ms",
        f"  verify, in this thread:               {summary_ms(direct)}",
        f"  verify, through the broker's pool:    {summary_ms(pooled)}",
        f"  verify, unknown user (dummy hash):    {summary_ms(unknown)}",
        f"  => at most ~{2 / statistics.median(direct):.0f} verifications/s with the pool's"
        f" 2 workers, if 2 cores are free",
    ]
    for line in lines:
        print(line, flush=True)
    return lines


# --------------------------------------------------------------------------- the flood


def source_ip(n: int) -> str:
    """The n-th loopback source address of the flood (127.1.0.1, 127.1.0.2, ...)."""
    return f"127.{1 + n // 65024}.{(n // 254) % 256}.{1 + n % 254}"


@dataclass
class FloodResult:
    statuses: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    addresses: int = 0


def kind_of(status: int, body: str) -> str:
    if status == 429:
        return "429 busy" if "busy" in body else "429 slowed down"
    if status == 401:
        return "401 wrong"
    return str(status)


async def flood(url: str, ca: str, seconds: float, concurrency: int, mode: str,
                per_address: int) -> FloodResult:
    ctx = ssl.create_default_context(cafile=ca)
    result = FloodResult()
    next_ip = 0
    next_name = 0
    deadline = now() + seconds
    start = now()

    async def worker(w: int) -> None:
        nonlocal next_ip, next_name
        while now() < deadline:
            if mode == "one-ip":
                ip = "127.0.0.200"
            else:
                ip = source_ip(next_ip)
                next_ip += 1
                result.addresses = next_ip
            conn = aiohttp.TCPConnector(ssl=ctx, local_addr=(ip, 0), force_close=False)
            async with aiohttp.ClientSession(connector=conn, headers={"Origin": url},
                                             cookie_jar=aiohttp.CookieJar(unsafe=True)) as s:
                try:
                    async with s.get(url + "/login") as r:
                        m = CSRF.search(await r.text())
                    if not m:
                        result.statuses["no form"] = result.statuses.get("no form", 0) + 1
                        await asyncio.sleep(0.1)
                        continue
                    for _ in range(per_address if mode != "one-ip" else 10**9):
                        if now() >= deadline:
                            return
                        next_name += 1
                        form = {"username": f"nobody-{w}-{next_name}", "csrf": m.group(1),
                                "password": secrets.token_urlsafe(12), "otp": "123456"}
                        t = now()
                        async with s.post(url + "/login", data=form,
                                          allow_redirects=False) as r:
                            body = await r.text()
                        result.latencies.append(now() - t)
                        k = kind_of(r.status, body)
                        result.statuses[k] = result.statuses.get(k, 0) + 1
                except (aiohttp.ClientError, OSError) as exc:
                    k = f"error {type(exc).__name__}"
                    result.statuses[k] = result.statuses.get(k, 0) + 1
                    await asyncio.sleep(0.05)

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    result.elapsed = now() - start
    return result


def flood_worker_main(args: argparse.Namespace) -> int:
    """``--flood-worker``: run the flood in this (separate) process; JSON on stdout."""
    r = asyncio.run(flood(args.url, args.ca, args.seconds, args.concurrency, args.mode,
                          args.per_address))
    json.dump({"statuses": r.statuses, "latencies": r.latencies, "elapsed": r.elapsed,
               "addresses": r.addresses, "cpu": time.process_time()}, sys.stdout)
    return 0


# --------------------------------------------------------------------------- the legitimate user


class Console:
    """A signed-in browser, over one keep-alive HTTPS connection."""

    def __init__(self, broker: Broker, ip: str) -> None:
        self.broker = broker
        self.url = broker.url
        self.ip = ip
        ctx = ssl.create_default_context(cafile=str(broker.ca))
        self.http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, local_addr=(ip, 0)),
            cookie_jar=aiohttp.CookieJar(unsafe=True), headers={"Origin": self.url})

    async def close(self) -> None:
        await self.http.close()

    async def sign_in(self, name: str, give_up: float) -> dict[str, Any]:
        """Sign in as a person would: the form, then the POST; on 429 wait Retry-After and
        try again (the same code: a refused try does not use it up)."""
        otp = await self.broker.totp_code(name)
        first: dict[str, Any] = {}
        t0 = now()
        tries = 0
        while True:
            tries += 1
            t = now()
            async with self.http.get(self.url + "/login") as r:
                m = CSRF.search(await r.text())
            assert m, "no sign-in form"
            async with self.http.post(self.url + "/login", allow_redirects=False, data={
                    "username": name, "password": PASSWORD, "otp": otp,
                    "csrf": m.group(1)}) as r:
                body = await r.text()
                status, retry = r.status, r.headers.get("Retry-After")
            took = now() - t
            if not first:
                first = {"status": kind_of(status, body) if status != 303 else "303 signed in",
                         "seconds": took}
            if status == 303:
                return {**first, "ok": True, "total": now() - t0, "tries": tries}
            if status != 429 or now() - t0 > give_up:
                return {**first, "ok": False, "total": now() - t0, "tries": tries,
                        "last": status}
            await asyncio.sleep(float(retry or 1))

    async def dashboard(self) -> float:
        t = now()
        async with self.http.get(self.url + "/dashboard", allow_redirects=False) as r:
            await r.read()
            assert r.status == 200, r.status
        return now() - t


async def probe_dashboard(console: Console, stop: asyncio.Event, gap: float) -> list[float]:
    out: list[float] = []
    while not stop.is_set():
        out.append(await console.dashboard())
        try:
            await asyncio.wait_for(stop.wait(), gap)
        except TimeoutError:
            pass
    return out


async def measure_phase(broker: Broker, console: Console, names: list[str], seconds: float,
                        ip_base: int, flood_cmd: list[str] | None) -> dict[str, Any]:
    """Probe /dashboard and sign ``names`` in (spread over ``seconds``), with or without a
    flood process running."""
    assert broker.proc is not None
    proc = None
    if flood_cmd:
        proc = await asyncio.create_subprocess_exec(*flood_cmd, stdout=subprocess.PIPE)
        await asyncio.sleep(min(2.0, seconds / 4))  # let it ramp up
    cpu0, busy0 = cpu_seconds(broker.proc.pid), machine_ticks()
    t0 = now()
    stop = asyncio.Event()
    prober = asyncio.ensure_future(probe_dashboard(console, stop, 0.1))
    sign_ins = []
    span = seconds * 0.6
    for i, name in enumerate(names):
        await asyncio.sleep(span / max(1, len(names)))
        user = Console(broker, f"127.0.3.{ip_base + i}")
        try:
            sign_ins.append(await user.sign_in(name, give_up=seconds))
        finally:
            await user.close()
    left = seconds - (now() - t0) - (min(2.0, seconds / 4) if flood_cmd else 0)
    if left > 0:
        await asyncio.sleep(left)
    stop.set()
    dash = await prober
    wall = now() - t0
    cpu1, busy1 = cpu_seconds(broker.proc.pid), machine_ticks()
    flood_out = None
    if proc:
        out, _ = await proc.communicate()
        flood_out = json.loads(out)
    return {"dashboard": dash, "sign_ins": sign_ins, "wall": wall,
            "broker_cpu": (cpu1 - cpu0) / wall,
            "machine_cpu": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
            * len(os.sched_getaffinity(0)),
            "flood": flood_out}


def report_phase(title: str, r: dict[str, Any]) -> list[str]:
    lines = [f"{title}:"]
    f = r["flood"]
    if f:
        done = sum(f["statuses"].values())
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(f["statuses"].items()))
        lines.append(f"  flood: {done} sign-ins answered in {f['elapsed']:.1f} s ="
                     f" {done / f['elapsed']:.0f}/s from {f['addresses'] or 1} address(es)"
                     f" ({kinds})")
        lines.append(f"  flood latency:        {summary_ms(f['latencies'])}")
        lines.append(f"  flood process CPU: {f['cpu'] / f['elapsed'] * 100:.0f} % of one core")
    lines.append(f"  broker CPU: {r['broker_cpu'] * 100:.0f} % of one core;"
                 f" machine: {r['machine_cpu'] * 100:.0f} %"
                 f" (of {len(os.sched_getaffinity(0)) * 100} %)")
    lines.append(f"  GET /dashboard (signed in): {summary_ms(r['dashboard'])}")
    ok = [s for s in r["sign_ins"] if s["ok"]]
    firsts = ", ".join(f"{s['status']} in {s['seconds'] * MS:.0f} ms" for s in r["sign_ins"])
    lines.append(f"  legitimate sign-ins: {len(ok)}/{len(r['sign_ins'])} got in;"
                 f" first try: {firsts}")
    if ok:
        lines.append("  legitimate sign-in, until signed in (retrying after Retry-After):"
                     f" {summary_ms([s['total'] for s in ok])},"
                     f" tries {[s['tries'] for s in ok]}")
    for line in lines:
        print(line, flush=True)
    return lines


async def bench_flood(broker: Broker, args: argparse.Namespace, users: list[str]) -> list[str]:
    out: list[str] = []
    console = Console(broker, "127.0.2.1")
    try:
        await console.sign_in("watcher", give_up=30)
        k = args.legit
        log(f"baseline: no flood, {args.baseline:.0f} s")
        r = await measure_phase(broker, console, users[:k], args.baseline, 1, None)
        out += report_phase("no flood (baseline)", r)
        for n, mode in enumerate(args.modes):
            cmd = [sys.executable, __file__, "--flood-worker", "--url", broker.url,
                   "--ca", str(broker.ca), "--seconds", str(args.seconds),
                   "--concurrency", str(args.concurrency), "--mode", mode,
                   "--per-address", str(args.per_address)]
            log(f"flood '{mode}': {args.concurrency} concurrent wrong-password sign-ins for"
                f" {args.seconds:.0f} s")
            r = await measure_phase(broker, console, users[k * (n + 1):k * (n + 2)],
                                    args.seconds, 50 * (n + 1), cmd)
            out += report_phase(f"flood '{mode}', {args.concurrency} concurrent", r)
            await asyncio.sleep(1)
    finally:
        await console.close()
    return out


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    p.add_argument("--runs", type=int, default=30, help="argon2 verifications timed per way")
    p.add_argument("--seconds", type=float, default=15, help="length of each flood")
    p.add_argument("--baseline", type=float, default=5, help="seconds measured without flood")
    p.add_argument("--concurrency", type=int, default=100,
                   help="concurrent sign-ins of the flood (the broker queues at most 64)")
    p.add_argument("--modes", default="distributed,one-ip",
                   type=lambda s: [m for m in s.split(",") if m],
                   help="floods to run, in order: distributed, one-ip")
    p.add_argument("--per-address", type=int, default=4,
                   help="distributed flood: tries per source address (5 are free)")
    p.add_argument("--legit", type=int, default=4,
                   help="legitimate sign-ins measured per phase (each its own account)")
    p.add_argument("--only", choices=("argon2", "flood"), help="run one part")
    # internal: the flood runs in its own process
    p.add_argument("--flood-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--ca", help=argparse.SUPPRESS)
    p.add_argument("--mode", default="distributed", help=argparse.SUPPRESS)
    args = parse(p, argv)
    bad = [m for m in args.modes if m not in ("distributed", "one-ip")]
    if bad:
        p.error(f"unknown flood mode(s): {bad}")
    return args


def bench(args: argparse.Namespace, broker: Broker) -> list[str]:
    results: list[str] = []
    if args.only in (None, "argon2"):
        log(f"(1) argon2id verification, {args.runs} runs each")
        results += asyncio.run(bench_argon2(args.runs))
    if args.only in (None, "flood"):
        broker.init()
        users = [f"tech{i}" for i in range(args.legit * (1 + len(args.modes)))]
        log(f"(2) accounts: watcher + {len(users)} technicians")
        broker.add_user("watcher", PASSWORD, display="Watcher")
        for name in users:
            broker.add_user(name, PASSWORD, display=name.title())
        broker.start()
        log(f"broker: {broker.url} (pid {broker.proc.pid if broker.proc else '?'})")
        results += asyncio.run(bench_flood(broker, args, users))
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.flood_worker:
        return flood_worker_main(args)
    event_loop()
    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-auth-", dir=args.dir))
    machine_info(tmp)
    broker = Broker(tmp / "data")
    return run(tmp, args.keep, lambda: bench(args, broker), stop=broker.stop)


if __name__ == "__main__":
    sys.exit(main())
