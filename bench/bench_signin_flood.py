#!/usr/bin/env python3
"""Known-device sign-in during a sign-in flood: how long a browser with a device cookie waits.

Run from the repository root with the dev venv's Python::

    .venv/bin/python bench/bench_signin_flood.py             # defaults: ~1.5 min
    .venv/bin/python bench/bench_signin_flood.py --help

A real ``tether-broker serve`` on 127.0.0.1 gets the flood of ``bench_auth.py``
(concurrent wrong-password sign-ins for never-repeated names from many loopback source
addresses 127.x.y.z, a few tries per address, in a separate process: every try that is
not refused costs an argon2 check, and the shared queue stays full). Meanwhile this
process signs in, one after another, accounts whose browser signed them in once before
the flood (so it holds their device cookie; its login itself has expired) and, for
comparison, accounts signing in from a browser the broker has never seen. Each sign-in
is what a person does: load the sign-in page, post the form (with the account's real
TOTP code); the time is until the answer (303 = signed in). A refused try is retried
after Retry-After, up to ``--give-up`` seconds. The benchmark prints figures; it never
passes or fails on time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import bench_auth
from bench_auth import PASSWORD, summary_ms
from common import (
    ROOT,
    arg_parser,
    cpu_seconds,
    event_loop,
    git_head,
    load_average,
    log,
    now,
    parse,
    print_header,
    run,
)

from tests.helpers import Broker

LOGIN = "__Host-tether"


class Browser(bench_auth.Console):
    """One browser (its own cookie jar, so its device cookie) from its own address."""

    def forget_login(self) -> None:
        """The login expired; the device cookie (if any) stays."""
        self.http.cookie_jar.clear(lambda c: c.key == LOGIN)

    async def sign_in(self, name: str, give_up: float) -> dict[str, Any]:
        result = await super().sign_in(name, give_up)
        if result["ok"]:
            self.forget_login()  # the next try must sign in again, with only the device
        return result


async def phase(broker: Broker, args: argparse.Namespace, known: list[Browser],
                known_names: list[str], strangers: list[str], flood: bool) -> dict[str, Any]:
    assert broker.proc is not None
    proc = None
    if flood:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, bench_auth.__file__, "--flood-worker", "--url", broker.url,
            "--ca", str(broker.ca), "--seconds", str(args.seconds),
            "--concurrency", str(args.concurrency), "--mode", "distributed",
            "--per-address", "4", stdout=subprocess.PIPE)
        await asyncio.sleep(2.0)  # let it fill the queue
    cpu0, t0 = cpu_seconds(broker.proc.pid), now()
    span = (args.seconds - 4.0) if flood else args.baseline

    async def known_devices() -> list[dict[str, Any]]:
        out = []
        for b, name in zip(known, known_names, strict=True):
            out.append(await b.sign_in(name, args.give_up))
            await asyncio.sleep(span / len(known_names))
        return out

    async def unknown_browsers() -> list[dict[str, Any]]:
        out = []
        for i, name in enumerate(strangers):
            await asyncio.sleep(span / (2 * len(strangers)))
            stranger = Browser(broker, f"127.0.5.{(50 if flood else 1) + i}")
            try:
                out.append(await stranger.sign_in(name, args.give_up))
            finally:
                await stranger.close()
        return out

    results = dict(zip(("known", "stranger"),
                       await asyncio.gather(known_devices(), unknown_browsers()), strict=True))
    wall = now() - t0
    cpu = (cpu_seconds(broker.proc.pid) - cpu0) / wall
    flood_out = None
    if proc:
        out, _ = await proc.communicate()
        flood_out = json.loads(out)
    return {**results, "broker_cpu": cpu, "flood": flood_out}


def report(title: str, r: dict[str, Any]) -> list[str]:
    lines = [f"{title}:"]
    f = r["flood"]
    if f:
        done = sum(f["statuses"].values())
        kinds = ", ".join(f"{k}: {v}" for k, v in sorted(f["statuses"].items()))
        lines.append(f"  flood: {done} sign-ins answered in {f['elapsed']:.1f} s ="
                     f" {done / f['elapsed']:.0f}/s from {f['addresses']} addresses ({kinds})")
    lines.append(f"  broker CPU: {r['broker_cpu'] * 100:.0f} % of one core")
    for key, who in (("known", "known device (device cookie)"),
                     ("stranger", "unknown browser (no cookie)")):
        rows = r[key]
        if not rows:
            continue
        ok = [x for x in rows if x["ok"]]
        firsts: dict[str, int] = {}
        for x in rows:
            firsts[x["status"]] = firsts.get(x["status"], 0) + 1
        lines.append(f"  {who}: {len(ok)}/{len(rows)} signed in; first try:"
                     f" {', '.join(f'{k} x{v}' for k, v in sorted(firsts.items()))}")
        lines.append(f"    first try (page + form):   {summary_ms([x['seconds'] for x in rows])}")
        if ok:
            within = sum(1 for x in ok if x["total"] <= 2.0)
            lines.append(f"    until signed in:           {summary_ms([x['total'] for x in ok])};"
                         f" within 2 s: {within}/{len(rows)}")
    for line in lines:
        print(line, flush=True)
    return lines


async def bench_flood(broker: Broker, args: argparse.Namespace) -> list[str]:
    n = args.known
    names = [f"known{i}" for i in range(2 * n)]
    strangers = [f"stranger{i}" for i in range(2 * args.strangers)]
    known = [Browser(broker, f"127.0.4.{i + 1}") for i in range(2 * n)]
    out: list[str] = []
    try:
        log(f"{2 * n} browsers sign their account in once (each gets its device cookie)")
        for b, name in zip(known, names, strict=True):
            first = await b.sign_in(name, args.give_up)
            assert first["ok"], first
            assert any(c.key == "__Host-tether-device" for c in b.http.cookie_jar)
        log(f"baseline: no flood, {n} known devices and {args.strangers} unknown browsers")
        r = await phase(broker, args, known[:n], names[:n], strangers[:args.strangers], False)
        out += report("no flood (baseline)", r)
        log(f"flood: {args.concurrency} concurrent wrong sign-ins for {args.seconds:.0f} s")
        r = await phase(broker, args, known[n:], names[n:], strangers[args.strangers:], True)
        out += report(f"flood from many addresses, {args.concurrency} concurrent", r)
    finally:
        for b in known:
            await b.close()
    return out


def bench(args: argparse.Namespace, broker: Broker) -> list[str]:
    broker.init()
    names = [f"known{i}" for i in range(2 * args.known)]
    names += [f"stranger{i}" for i in range(2 * args.strangers)]
    log(f"{len(names)} accounts")
    for name in names:
        broker.add_user(name, PASSWORD, display=name.title())
    broker.start()
    log(f"broker: {broker.url} (pid {broker.proc.pid if broker.proc else '?'})")
    return asyncio.run(bench_flood(broker, args))


def main(argv: list[str] | None = None) -> int:
    p = arg_parser(__doc__)
    p.add_argument("--seconds", type=float, default=30, help="length of the flood")
    p.add_argument("--baseline", type=float, default=5, help="seconds measured without flood")
    p.add_argument("--concurrency", type=int, default=150,
                   help="concurrent sign-ins of the flood (the shared queue holds 64)")
    p.add_argument("--known", type=int, default=10,
                   help="known-device sign-ins per phase (each its own account and browser)")
    p.add_argument("--strangers", type=int, default=5,
                   help="sign-ins from unknown browsers per phase, for comparison")
    p.add_argument("--give-up", type=float, default=20,
                   help="seconds after which a refused sign-in stops retrying")
    args = parse(p, argv)
    loop = event_loop()
    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-signin-", dir=args.dir))
    print_header("sign-in flood", f"code    : {ROOT} at {git_head()}; data in {tmp}",
                 f"load    : {load_average()}; loop {loop}",
                 machine=f", Python {platform.python_version()}")
    broker = Broker(tmp / "data")
    return run(tmp, args.keep, lambda: bench(args, broker), stop=broker.stop)


if __name__ == "__main__":
    sys.exit(main())
