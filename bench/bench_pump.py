#!/usr/bin/env python3
"""The channel pump alone, in one process: what recording costs a frame.

Runs the real core (tests/broker/core/harness.py: real audit log on a temporary
SQLite store, real recording files) with fake channel ends, and sends one byte
customer → viewer and one byte back, ``--frames`` times, timing each round
trip. Two ways, alternated ``--rounds`` times: with the recording handed to the
writer thread as the broker does, and with the same bytes written inline on
the event loop (the old behaviour) for comparison. Prints figures; never
passes or fails.

    .venv/bin/python bench/bench_pump.py [--frames 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from common import pct  # also puts the repository root on sys.path

from tests.broker.core.harness import close, make


async def round_trips(inline: bool, frames: int) -> list[float]:
    with tempfile.TemporaryDirectory() as tmp:
        h = await make(Path(tmp))
        try:
            client, session = await h.session()
            cid, agent_end, viewer_end = await h.open(client, session)
            sink = h.core._ctx.pumps[session.channels[cid]].recorder.sink
            if inline:
                def write(data: bytes) -> None:
                    sink._write(data)
                    with sink._cond:
                        sink._queued = sink.size

                sink.write = write  # type: ignore[method-assign]
            times = []
            for _ in range(frames):
                t = time.perf_counter()
                agent_end.incoming.put_nowait(b"x")
                await viewer_end.sent.get()
                viewer_end.incoming.put_nowait(b"y")
                await agent_end.sent.get()
                times.append((time.perf_counter() - t) * 1e6)
            return times[frames // 10:]  # warm-up left out
        finally:
            await close(h)


async def main(args: argparse.Namespace) -> None:
    for r in range(1, args.rounds + 1):
        for inline in (False, True):
            times = await round_trips(inline, args.frames)
            how = "written inline on the loop" if inline else "writer thread (as shipped)"
            print(f"round {r}  {how:28}  p50 {pct(times, 50):7.1f} µs  "
                  f"p99 {pct(times, 99):7.1f} µs  ({len(times)} round trips)")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    asyncio.run(main(p.parse_args()))
