#!/usr/bin/env python3
"""Echo of one session while another session's client floods its control channel.

A real broker (TLS on 127.0.0.1, default limits) with two sessions. The victim's
shell channel has a scripted client end that echoes every frame back, and a
technician's viewer that sends a marker and waits for it: ``--samples`` round
trips idle, then as many while a second process, the hostile customer client of
the other session, sends heartbeats as fast as it can (the attack pass measured
~65,000 a second), resuming its session each time the broker closes it; the
round trips are paced alike (one every 20 ms); the flooded ones span the flood. Prints p50/p99 of
both and what the flood achieved; never passes or fails.

    .venv/bin/python bench/bench_flood.py [--samples 400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import secrets
import shutil
import tempfile
import time
from pathlib import Path

from common import load_average, pct, print_header  # also puts the repository root on sys.path
from websockets.exceptions import ConnectionClosed

from tests.helpers import Broker
from tests.security.tools import PASSWORD, Browser, FakeAgent, shell_session

HEARTBEAT = json.dumps({"type": "heartbeat"})


async def flood(broker: Broker, secret: str, seconds: float) -> dict[str, float]:
    """The hostile client: resume, send heartbeats until closed, again, for ``seconds``."""
    sent = closes = resumes = 0
    reasons: set[str] = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        agent = await FakeAgent(broker, "127.0.70.3").connect(
            {"type": "resume", "secret": secret, "version": "x", "os": "x"})
        try:
            token = await agent.next("resume_token", seconds)
            secret = token["secret"]
            resumes += 1
            assert agent.ws is not None
            while time.monotonic() < end:
                await agent.ws.send(HEARTBEAT)
                sent += 1
                if sent % 64 == 0:  # a send that need not wait never yields: let the
                    await asyncio.sleep(0)  # reader see the broker's close
        except ConnectionClosed as exc:
            closes += 1
            if exc.rcvd:
                reasons.add(f"{exc.rcvd.code} {exc.rcvd.reason}")
        finally:
            await agent.close()
    return {"sent": sent, "closes": closes, "resumes": resumes, "reasons": sorted(reasons)}


def flood_process(data: str, url: str, secret: str, seconds: float, out: object) -> None:
    broker = Broker(Path(data))
    broker.url = url
    out.put(asyncio.run(flood(broker, secret, seconds)))  # type: ignore[attr-defined]


async def echo_samples(viewer: object, n: int, until: asyncio.Future[object] | None = None,
                       gap: float = 0.0) -> list[float]:
    """``n`` round trips (or, with ``until``, as many as fit before it is done)."""
    times = []
    for i in range(n if until is None else 10**6):
        if until is not None and until.done():
            break
        await asyncio.sleep(gap)
        marker = f"<{i}:{secrets.token_hex(3)}>"
        viewer.output.clear()  # type: ignore[attr-defined]
        t = time.perf_counter()
        await viewer.send(marker)  # type: ignore[attr-defined]
        await viewer.expect(marker.replace("<", r"\<"), 10)  # type: ignore[attr-defined]
        times.append((time.perf_counter() - t) * 1000)
    return times if until is not None else times[n // 10:]  # warm-up left out


async def main(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-flood-"))
    broker = Broker(tmp / "data").init()
    for name in ("victim", "attacker"):
        broker.add_user(name, PASSWORD)
    broker.start()
    log_start = broker.log.stat().st_size
    try:
        tech = await Browser(broker, "127.0.70.1").signed_in("victim")
        agent = await FakeAgent(broker, "127.0.70.2").connect()
        sid, cid, secret = await shell_session(tech, agent)
        relay = await agent.relay(secret)

        async def echo() -> None:
            async for frame in relay:
                await relay.send(frame)

        echoing = asyncio.create_task(echo())
        viewer = await tech.attach(sid, cid)
        hostile_tech = await Browser(broker, "127.0.70.4").signed_in("attacker")
        hostile = await FakeAgent(broker, "127.0.70.3").connect()
        hostile_sid = await hostile_tech.session_id(await hostile.code())
        await hostile.accept_session()
        await hostile_tech.wait_for(hostile_sid, lambda s: s["state"] == "active", "consent")
        token = (await hostile.next("resume_token"))["secret"]
        await hostile.close()

        idle = await echo_samples(viewer, args.samples, gap=0.02)  # paced like the flooded
        out: multiprocessing.Queue[dict[str, float]] = multiprocessing.Queue()
        child = multiprocessing.Process(target=flood_process, args=(
            str(broker.data), broker.url, token, args.flood_seconds, out))
        child.start()
        await asyncio.sleep(1.0)  # let the flood start
        t0 = time.monotonic()
        done = asyncio.ensure_future(asyncio.to_thread(out.get, True, args.flood_seconds + 30))
        flooded = await echo_samples(viewer, 0, until=done, gap=0.02)
        took = time.monotonic() - t0
        result = await done
        child.join(10)
        echoing.cancel()
        for thing in (viewer.ws, relay):
            await thing.close()
        for thing in (agent, tech, hostile_tech):
            await thing.close()
    finally:
        broker.stop()
    grew = broker.log.stat().st_size - log_start
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"echo idle     p50 {pct(idle, 50):6.2f} ms  p99 {pct(idle, 99):6.2f} ms  "
          f"({len(idle)} round trips)")
    print(f"echo flooded  p50 {pct(flooded, 50):6.2f} ms  p99 {pct(flooded, 99):6.2f} ms  "
          f"({len(flooded)} round trips in {took:.1f} s)")
    print(f"p50 flooded / idle: {pct(flooded, 50) / pct(idle, 50):.2f}x")
    print(f"flood: {result['sent']} heartbeats sent in {args.flood_seconds:.0f} s, "
          f"{result['closes']} closes, {result['resumes']} resumes; closed with "
          f"{result['reasons']}")
    print(f"broker.log grew {grew / 1024:.0f} KiB over the run; load average {load_average()}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--flood-seconds", type=float, default=20.0)
    args = p.parse_args()
    print_header("flood", f"samples : {args.samples} echo round trips idle, then flooded")
    asyncio.run(main(args))
