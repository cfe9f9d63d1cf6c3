"""Structured logs and collapsed repeats (broker/logs.py)."""

from __future__ import annotations

import json
import logging
import types

import pytest

from tether.broker import logs


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


def record(msg: str, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("tether.core", logging.INFO, __file__, 1, msg, (), None)
    rec.__dict__.update(extra)
    return rec


def test_repeats_past_the_burst_are_counted_and_reported_in_the_next_window(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(logs, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    f = logs.Repeats(burst=3, window=10)
    passed = [f.filter(record("late decision ignored", session="s1")) for _ in range(1000)]
    assert passed.count(True) == 3
    assert f.filter(record("late decision ignored", session="s2"))  # another key
    assert f.filter(record("something else", session="s1"))
    clock.now += 10
    nxt = record("late decision ignored", session="s1")
    assert f.filter(nxt)
    assert nxt.suppressed == "997 similar suppressed"  # type: ignore[attr-defined]
    line = json.loads(logs.JSONFormatter().format(nxt))
    assert line["suppressed"] == "997 similar suppressed" and line["session"] == "s1"


def test_the_keys_remembered_are_bounded() -> None:
    f = logs.Repeats(burst=1, window=10, max_keys=50)
    for i in range(500):
        f.filter(record("hello from", peer=f"10.0.{i // 256}.{i % 256}"))
    assert len(f._seen) <= 50
