"""The customer's local log: bounded output, and a full disk ends nothing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tether.client.channels import watch
from tether.client.journal import Journal


def entries(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_flood_is_logged_up_to_the_bound_then_counted(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watch, "OUTPUT_LOG_LIMIT", 100)
    journal = Journal(tmp_path / "client.log")
    with open(os.devnull, "wb") as sink:
        watcher = watch.Watcher(watch.Terminal(sink.fileno()), enabled=False, journal=journal)
        for i in range(30):
            watcher.output("c1", f"line {i:02d}\r\n".encode())  # 9 bytes each
        watcher.output("c2", b"other channel\r\n")
        watcher.forget("c1")
        watcher.forget("c2")
    journal.close()
    log = entries(tmp_path / "client.log")
    c1 = "".join(str(e["text"]) for e in log if e["event"] == "output" and e["channel"] == "c1")
    assert c1.startswith("line 00\r\n") and "line 11\r\n" in c1 and "line 12" not in c1
    assert [e for e in log if e["event"] == "output_not_logged"] == [
        {"ts": log[-1]["ts"], "event": "output_not_logged", "channel": "c1",
         "bytes": 18 * 9, "limit": 100}]
    assert any(e["event"] == "output" and e["channel"] == "c2" for e in log)


def test_a_full_disk_loses_entries_but_says_how_many(tmp_path: Path) -> None:
    journal = Journal(Path("/dev/full"))  # every write: ENOSPC
    journal.write("output", channel="c1", text="lost")
    journal.write("output", channel="c1", text="lost too")
    assert journal.lost == 2
    os.dup2(os.open(tmp_path / "client.log", os.O_WRONLY | os.O_CREAT, 0o600), journal._fd)
    journal.write("channel_closed", channel="c1")
    journal.close()
    (entry,) = entries(tmp_path / "client.log")
    assert entry["event"] == "channel_closed" and entry["entries_lost_before"] == 2
