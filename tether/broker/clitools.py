"""What the command-line modules share: the data directory and a one-off store."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from .store.sqlite import Store

T = TypeVar("T")


def data_dir(args: argparse.Namespace) -> Path:
    data = args.data or os.environ.get("TETHER_DATA")
    if not data:
        raise SystemExit("tether-broker: --data DIR (or TETHER_DATA) is required")
    return Path(data)


def on_store(data: Path, fn: Callable[[Store], Awaitable[T]]) -> T:
    async def run() -> T:
        store = await Store.open(data / "tether.db")
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(run())
