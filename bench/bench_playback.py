#!/usr/bin/env python3
"""Playback benchmark for Tether: a 1-hour terminal recording in the audit player.

Run from the repository root with the dev venv's Python::

    /tmp/venv/bin/python bench/bench_playback.py            # defaults: 60 min, 3 runs
    /tmp/venv/bin/python bench/bench_playback.py --help

A data directory made by ``tether-broker init`` gets, before the broker starts,
what a finished 1-hour support session leaves behind: the session row, the
recording row and its sealed asciicast v2 file, and the session's audit events
(correctly chained, timestamped over the hour, as hub.py and relay.py write
them). The cast is synthetic but shaped like a real shell session: typed
commands echoed a key at a time, a line of output every 0.5-2 s, idle stretches,
bursts of a few hundred kB (a ``cat`` of a log), a resize, a password typed with
echo off, the broker's own markers. Then a real ``tether-broker serve`` on
127.0.0.1 and headless Chromium (SPKI-pinned, like the browser tests) signed in
as an auditor open the session record page, click Play, jump to the last marker
(the end of the hour) and change the speed, each timed inside the page. The
benchmark prints figures; it never passes or fails on time. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import secrets
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from common import (
    INSERT_AUDIT,
    ROOT,
    arg_parser,
    audit_head,
    audit_row,
    banner,
    git_head,
    load_average,
    log,
    now,
    parse,
    print_header,
    run,
)

from tests.e2e.conftest import CHROMIUM, spki_sha256
from tests.helpers import Broker

PASSWORD = "bench " + secrets.token_hex(8)
MS = 1000.0

#: Timings taken inside the console page (not the frame): clicks on Play and on
#: marker buttons, and the player frame's "loaded" / "state" messages.
PAGE_PROBE = """
if (window.top === window) {
  window.__bench = {loaded: [], states: []};
  document.addEventListener('click', (e) => {
    const t = performance.now();
    if (e.target.closest('.play-recording')) window.__bench.play = t;
    if (e.target.closest('.marker-jump')) window.__bench.jump = t;
  }, true);
  window.addEventListener('message', (e) => {
    const d = e.data, t = performance.now();
    if (!d || typeof d !== 'object') return;
    if (d.type === 'loaded') window.__bench.loaded.push(t);
    if (d.type === 'state') window.__bench.states.push([d.state, t]);
  });
}
"""


def chromium_version() -> str:
    try:
        return subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info(tmp: Path) -> None:
    print_header("playback",
                 f"browser : {chromium_version()} ({CHROMIUM}), headless",
                 f"code    : {ROOT} at {git_head(('tether', 'web'))}; data in {tmp}",
                 f"load    : {load_average()}")


# --------------------------------------------------------------------------- the recording


LOG_WORDS = ("systemd[1]: Started", "kernel: eth0: link up", "sshd[812]: Accepted publickey",
             "nginx: GET /api/health 200", "cron[455]: (root) CMD (run-parts)",
             "postgres[1201]: checkpoint complete", "app[3321]: request served in",
             "dockerd: container started", "kernel: EXT4-fs (sda1): re-mounted")
COMMANDS = ("tail -f /var/log/syslog", "journalctl -u app -f", "df -h", "free -m",
            "systemctl status nginx", "ls -la /etc/nginx/sites-enabled", "top -b -n 1 | head",
            "grep -i error /var/log/app/app.log | tail -50", "ping -c 5 10.0.0.1",
            "du -sh /var/* | sort -h", "ps aux --sort=-%mem | head -20", "uptime")
PROMPT = "\x1b[32mroot@customer-pc\x1b[0m:\x1b[34m~\x1b[0m# "


class Cast:
    """An asciicast v2 file written the way recording.CastWriter writes it."""

    def __init__(self, cols: int, rows: int, started: int) -> None:
        header = {"version": 2, "width": cols, "height": rows, "timestamp": started,
                  "title": "bench", "env": {"TERM": "xterm-256color"}}
        self.lines = [json.dumps(header, ensure_ascii=False, separators=(", ", ": "))]
        self.t = 0.0
        self.events = 0

    def add(self, dt: float, code: str, text: str) -> None:
        self.t += max(0.0, dt)
        self.lines.append(json.dumps([round(self.t, 6), code, text], ensure_ascii=False,
                                     separators=(", ", ": ")))
        self.events += 1

    def body(self) -> bytes:
        return ("\n".join(self.lines) + "\n").encode()


def log_line(rnd: random.Random, t: float) -> str:
    stamp = time.strftime("%b %d %H:%M:%S", time.gmtime(1_700_000_000 + t))
    words = rnd.choice(LOG_WORDS)
    extra = " ".join(secrets.token_hex(rnd.randint(2, 6)) for _ in range(rnd.randint(1, 5)))
    level = rnd.random()
    if level < 0.05:
        return f"{stamp} host \x1b[31mERROR\x1b[0m {words} {extra}\r\n"
    if level < 0.15:
        return f"{stamp} host \x1b[33mWARN\x1b[0m {words} {extra}\r\n"
    return f"{stamp} host {words} {extra}\r\n"


def typed(cast: Cast, rnd: random.Random, command: str, *, echo: bool = True) -> None:
    """A command typed a key at a time: each key is input, its echo is output."""
    for ch in command:
        dt = rnd.uniform(0.06, 0.25)
        if echo:
            cast.add(dt, "i", ch)
            cast.add(0.002, "o", ch)
        else:
            cast.t += dt  # echo off: the recorder keeps no input, the PTY echoes nothing
    if echo:
        cast.add(rnd.uniform(0.1, 0.4), "i", "\r")
    cast.add(0.002, "o", "\r\n")


def make_cast(minutes: float, seed: int) -> tuple[Cast, list[tuple[float, str]]]:
    """The recording, and the broker's audit moments in it: [(seconds, action)]."""
    rnd = random.Random(seed)
    end = minutes * 60
    cast = Cast(120, 36, int(time.time() - end - 120))
    moments: list[tuple[float, str]] = []
    cast.add(0.0005, "m", "consent: shell allowed by the customer")
    cast.add(0.02, "m", "viewer attached: Alice Martin")
    moments.append((cast.t, "viewer_attached"))
    moments.append((cast.t + 0.001, "opened"))
    cast.add(0.3, "o", PROMPT)
    next_burst = rnd.uniform(120, 360)
    next_chat = rnd.uniform(200, 500)
    resized = detached = sudo = False
    while cast.t < end - 30:
        if not resized and cast.t > end * 0.2:
            cast.add(1.0, "r", "140x40")
            resized = True
        if not detached and cast.t > end * 0.5:
            cast.add(1.0, "m", "viewer detached")
            moments.append((cast.t, "viewer_detached"))
            cast.t += rnd.uniform(20, 60)  # the technician reloads the page; the shell idles
            cast.add(0, "m", "viewer attached: Alice Martin")
            moments.append((cast.t, "viewer_attached"))
            detached = True
        if not sudo and cast.t > end * 0.7:
            typed(cast, rnd, "sudo systemctl restart app")
            cast.add(0.3, "o", "[sudo] password for root: ")
            cast.add(0.01, "m", "echo off (input hidden)")
            typed(cast, rnd, "hunter2hunter2", echo=False)
            cast.add(0.01, "m", "echo on")
            cast.add(1.5, "o", PROMPT)
            sudo = True
        if cast.t > next_chat:
            moments.append((cast.t, "chat"))
            next_chat += rnd.uniform(200, 500)
        typed(cast, rnd, rnd.choice(COMMANDS))
        if cast.t > next_burst:  # a cat of a big log: a few hundred kB at once
            size = rnd.randint(150_000, 400_000)
            sent = 0
            while sent < size:
                chunk = "".join(log_line(rnd, cast.t) for _ in range(40))[:4096]
                cast.add(rnd.uniform(0.001, 0.01), "o", chunk)
                sent += len(chunk)
            next_burst += rnd.uniform(180, 420)
        else:  # a line every 0.5-2 s for a while (tail -f, a build, a ping)
            for _ in range(rnd.randint(5, 60)):
                cast.add(rnd.uniform(0.5, 2.0), "o", log_line(rnd, cast.t))
                if cast.t > end - 30:
                    break
        cast.add(rnd.uniform(0.05, 0.3), "o", "^C\r\n" + PROMPT)
        if rnd.random() < 0.15:
            cast.t += rnd.uniform(10, 60)  # the technician reads, thinks, asks on the phone
    cast.t = max(cast.t, end - 5)
    typed(cast, rnd, "echo bench-the-end")
    cast.add(0.01, "o", "bench-the-end\r\n" + PROMPT)
    cast.t = max(cast.t + 1, end)
    moments.append((cast.t, "closed"))
    return cast, moments


# --------------------------------------------------------------------------- the session


def seed_session(data: Path, minutes: float, seed: int) -> dict[str, Any]:
    """Put a finished session with its recording and events into the data directory.

    The rows and events are those hub.py and relay.py write during a real
    session, with the hour's timestamps; the events extend the existing chain.
    """
    cast, moments = make_cast(minutes, seed)
    sid = "s_bench" + secrets.token_urlsafe(9)
    cid = "c_bench" + secrets.token_urlsafe(9)
    rel = f"recordings/{sid}/{cid}.cast"
    body = cast.body()
    path = data / rel
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()

    t_rec = int((time.time() - cast.t - 60) * 1e6)  # recording.started
    t0 = t_rec - 8_000_000
    ip = "127.0.0.1"
    ch = {"channel": cid}
    events: list[tuple[int, str, str, str | None, dict[str, Any]]] = [
        (t0, "alice", "session.claimed", ip, {"client_ip": ip, "client_os": "Linux"}),
        (t0 + 2_500_000, "customer", "session.consented", ip,
         {"machine": "customer-pc", "os": "Linux-6.8-x86_64", "user": "root"}),
        (t0 + 5_000_000, "alice", "channel.requested", ip, {**ch, "kind": "terminal"}),
        (t_rec - 10_000, "customer", "channel.consented", ip, {**ch, "kind": "terminal"}),
        (t_rec, "broker", "recording.started", None, {**ch, "path": rel}),
        (t_rec + 5_000, "client", "channel.agent_connected", ip, ch),
    ]
    names = {"viewer_attached": ("alice", "channel.viewer_attached", ip),
             "viewer_detached": ("alice", "channel.viewer_detached", ip),
             "opened": ("broker", "channel.opened", None),
             "chat": ("alice", "chat.message", ip)}
    t_end = t_rec + int(cast.t * 1e6)  # the channel closes as the recording ends
    for seconds, what in moments:
        ts = t_rec + int(seconds * 1e6)
        if what == "closed":
            continue
        actor, action, who = names[what]
        detail = {"text": "Checking the logs now"} if what == "chat" else dict(ch)
        events.append((ts, actor, action, who, detail))
    events += [
        (t_end - 2_000, "alice", "session.ended", ip, {"reason": "ended by Alice Martin"}),
        (t_end, "broker", "channel.closed", None, {**ch, "reason": "the session ended"}),
        (t_end + 3_000, "broker", "recording.sealed", None,
         {**ch, "path": rel, "sha256": sha, "bytes": len(body)}),
    ]
    events.sort(key=lambda e: e[0])

    db = sqlite3.connect(data / "tether.db")
    try:
        tech = db.execute("SELECT id FROM users WHERE name = 'alice'").fetchone()[0]
        seq, head = audit_head(db)
        rows = []
        for ts, actor, action, who, detail in events:
            seq += 1
            event = {"seq": seq, "ts_us": ts, "session_id": sid, "actor": actor,
                     "action": action, "ip": who, "detail": detail}
            row = audit_row(event, head)
            head = row[-1]
            rows.append(row)
        with db:
            db.execute("INSERT INTO sessions (id, technician_id, state, consent, created_us,"
                       " ended_us, end_reason, client_ip, machine, os, customer_user)"
                       " VALUES (?, ?, 'ended', 'allowed', ?, ?, ?, ?, ?, ?, ?)",
                       (sid, tech, t0, t_end, "ended by Alice Martin", ip, "customer-pc",
                        "Linux-6.8-x86_64", "root"))
            db.execute("INSERT INTO recordings (session_id, channel_id, path, sha256, bytes,"
                       " closed_us) VALUES (?, ?, ?, ?, ?, ?)",
                       (sid, cid, rel, sha, len(body), t_end + 3_000))
            db.executemany(INSERT_AUDIT, rows)
    finally:
        db.close()
    kinds: dict[str, int] = {}
    for line in cast.lines[1:]:
        code = line.split(", ", 2)[1].strip('"')
        kinds[code] = kinds.get(code, 0) + 1
    return {"sid": sid, "cid": cid, "bytes": len(body), "duration": cast.t,
            "events": cast.events, "kinds": kinds, "audit_events": len(rows)}


# --------------------------------------------------------------------------- the browser


async def wait_for(page: Any, expression: str, timeout: float) -> Any:
    """Poll until ``expression`` is truthy in the page. The figures are the page's own
    timestamps, so the polling interval does not matter. (wait_for_function would
    need eval, which the console's CSP refuses.)"""
    deadline = now() + timeout
    while True:
        value = await page.evaluate(expression)
        if value:
            return value
        if now() > deadline:
            raise TimeoutError(f"waited {timeout:.0f} s for {expression}")
        await asyncio.sleep(0.02)


async def one_run(page: Any, url: str, info: dict[str, Any], speed: str,
                  timeout: float) -> dict[str, float]:
    """Open the record page, Play, jump to the end, change the speed: times in ms."""
    t_nav = now()
    await page.goto(url, wait_until="load", timeout=timeout * MS)
    wall_load = (now() - t_nav) * MS
    nav = await page.evaluate(
        "(() => { const n = performance.getEntriesByType('navigation')[0];"
        " return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd}; })()")
    await page.get_by_role("button", name=f"Play recording {info['cid']}").click()
    loaded_at = await wait_for(
        page, "window.__bench.loaded.length >= 1 && window.__bench.loaded[0]", timeout)
    played = await page.evaluate("window.__bench.play")
    fetched = await page.evaluate(
        "(() => { const e = performance.getEntriesByType('resource')"
        ".filter((r) => r.name.includes('/api/audit/sessions/'));"
        " return e.length ? e[e.length - 1].responseEnd : null; })()")
    # the end of the hour: the last marker ("channel closed")
    last = page.locator("#player-markers button").last
    await page.evaluate("window.__bench.states = []")
    await last.click()
    seeked_at = await wait_for(
        page, "(window.__bench.states.find((s) => s[0] === 'seeked') || [])[1]", timeout)
    jumped = await page.evaluate("window.__bench.jump")
    screen = page.frame_locator("#player-frame").locator(".ap-term-text")
    text = await screen.inner_text(timeout=timeout * MS)
    if "bench-the-end" not in text:
        log("  WARNING: after the jump to the end the terminal does not show the last output")
    # another speed: the frame makes a new player at the current time (the end)
    t_speed = await page.evaluate("performance.now()")
    await page.get_by_label("Speed").select_option(speed)
    respeed_at = await wait_for(
        page, "window.__bench.loaded.length >= 2 && window.__bench.loaded[1]", timeout)
    return {
        "page load (navigation → load event)": nav["load"],
        "page load, wall clock seen by the harness": wall_load,
        "Play → recording fetched (response end)": (fetched or float("nan")) - played,
        "Play → player ready, frame at 0:00 shown": loaded_at - played,
        "jump to the end (last marker) → shown": seeked_at - jumped,
        f"speed {speed}× at the end → new player ready": respeed_at - t_speed,
    }


async def measure(broker: Broker, info: dict[str, Any], args: argparse.Namespace) -> None:
    from playwright.async_api import async_playwright

    pin = spki_sha256(broker.data / "certs" / "broker.pem")
    url = f"{broker.url}/audit/sessions/{info['sid']}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=CHROMIUM, timeout=args.timeout * MS,
            args=["--headless", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking",
                  f"--ignore-certificate-errors-spki-list={pin}"])
        try:
            context = await browser.new_context(viewport={"width": 1280, "height": 900})
            await context.add_init_script(PAGE_PROBE)
            page = await context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(broker.url + "/login")
            await page.get_by_label("Username").fill("carol")
            await page.get_by_label("Password").fill(PASSWORD)
            otp = page.get_by_label("Authentication code")
            if await otp.count():  # once accounts have TOTP
                await otp.fill(await broker.totp_code("carol"))
            await page.get_by_role("button", name="Sign in").click()
            await page.wait_for_load_state()
            results: list[dict[str, float]] = []
            for n in range(args.warmup + args.runs):
                r = await one_run(page, url, info, args.speed, args.timeout)
                label = "warm-up" if n < args.warmup else f"run {n - args.warmup + 1}"
                log(f"{label}: " + ", ".join(f"{v:.0f}" for v in r.values()) + " ms")
                if n >= args.warmup:
                    results.append(r)
            if args.screenshot:
                card = page.locator("section", has=page.locator("#player-area"))
                await card.screenshot(path=str(args.screenshot))
                log(f"screenshot: {args.screenshot}")
            if errors:
                log("WARNING: the browser reported errors:\n  " + "\n  ".join(errors[:10]))
        finally:
            await browser.close()
    banner(f"SUMMARY: a {info['duration'] / 60:.0f}-minute recording, "
           f"{info['bytes'] / 1e6:.2f} MB, {info['events']} events; "
           f"best / median of {len(results)} runs, ms")
    for key in results[0]:
        values = [r[key] for r in results]
        print(f"  {key:<48} {min(values):>8.0f} {median(values):>8.0f}")


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = arg_parser(__doc__)
    p.add_argument("--minutes", type=float, default=60, help="length of the recording")
    p.add_argument("--runs", type=int, default=3, help="measured runs (best and median shown)")
    p.add_argument("--warmup", type=int, default=0,
                   help="unmeasured runs first (the browser's cache and JIT warm up)")
    p.add_argument("--speed", default="4", choices=("0.5", "2", "4", "8"),
                   help="the speed chosen at the end of each run")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic recording")
    p.add_argument("--timeout", type=float, default=120, help="seconds any one step may take")
    p.add_argument("--screenshot", type=Path,
                   help="save a PNG of the Recordings card after the last run here")
    args = parse(p, argv)
    if args.runs < 1 or args.minutes <= 1:
        p.error("--runs must be at least 1 and --minutes more than 1")
    return args


def bench(args: argparse.Namespace, broker: Broker) -> None:
    broker.init()
    broker.add_user("alice", PASSWORD)
    broker.add_user("carol", PASSWORD, role="auditor", display="Carol Audit",
                    org="Acme Audit")
    t = now()
    info = seed_session(broker.data, args.minutes, args.seed)
    kinds = ", ".join(f"{n} {k!r}" for k, n in sorted(info["kinds"].items()))
    log(f"recording: {info['duration'] / 60:.1f} min, {info['bytes'] / 1e6:.2f} MB, "
        f"{info['events']} events ({kinds}); {info['audit_events']} audit events; "
        f"made in {now() - t:.1f} s")
    broker.start()
    log(f"broker: {broker.url} (pid {broker.proc.pid if broker.proc else '?'})")
    log("columns: " + ", ".join(("page load", "wall", "fetch", "ready", "to the end",
                                 "speed change")))
    asyncio.run(measure(broker, info, args))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"no Chromium at {CHROMIUM} (set TETHER_CHROMIUM)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="tether-bench-playback-", dir=args.dir))
    machine_info(tmp)
    broker = Broker(tmp / "data")
    return run(tmp, args.keep, lambda: bench(args, broker), stop=broker.stop)


if __name__ == "__main__":
    sys.exit(main())
