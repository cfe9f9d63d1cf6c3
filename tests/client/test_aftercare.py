"""The end of a session as the customer reads it, and the next start's warning
(client/aftercare.py): real processes, a temporary HOME and state directory."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tether.client import escapes, procfs
from tether.client.aftercare import STATE_FILE, Aftercare
from tether.client.journal import Journal


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "1000"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def care(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Aftercare, list[str]]]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "home").mkdir()
    journal = Journal(tmp_path / "client.log")
    said: list[str] = []
    yield Aftercare(journal, said.append, tmp_path / "state", "bob"), said
    journal.close()


def logged(care: Aftercare) -> list[dict[str, object]]:
    return [json.loads(x) for x in care.journal.path.read_text().splitlines()]


async def test_a_session_without_a_shell_says_nothing(care: tuple[Aftercare, list[str]]) -> None:
    after, said = care
    after.finish([])
    assert said == [] and logged(after) == []


async def test_the_end_lists_what_started_since_the_first_shell_and_kills_nothing(
        care: tuple[Aftercare, list[str]], tmp_path: Path) -> None:
    after, said = care
    await after.before_shell()
    proc = subprocess.Popen(["sleep", "1001"])  # "started through the customer's tmux"
    try:
        (tmp_path / "home" / ".profile").write_text("sleep 1001 &\n")
        after.count_stopped([11, 12])
        after.finish([12])  # 12 is still in the client's tree: a survivor, not stopped
        text = "\n".join(said)
        assert said[0].startswith("Stopped 1 process of the technician's shells")
        assert f"{proc.pid:>7}  sleep 1001" in text
        kill = next(x for x in said if x.startswith("To stop them: kill "))
        assert str(proc.pid) in kill.split()
        assert "  ~/.profile (added)" in said
        assert proc.poll() is None  # listed, still running
        [entry] = [e for e in logged(after) if e["event"] == "after_session"]
        assert proc.pid in [p["pid"] for p in entry["escaped"]]  # type: ignore[union-attr]
        assert entry["changed"] == [{"what": "~/.profile", "how": "added"}]
        kept = escapes.load_state((tmp_path / "state" / STATE_FILE).read_text(),
                                  procfs.boot_id())
        assert escapes.Listed(proc.pid, procfs.start_of(proc.pid) or -1, "sleep 1001") in kept
        said.clear()
        after.finish([])  # the watch ended with the session
        assert said == []
    finally:
        proc.kill()
        proc.wait()


def test_the_next_start_warns_about_listed_processes_still_running(
        care: tuple[Aftercare, list[str]], sleeper: subprocess.Popen[bytes],
        tmp_path: Path) -> None:
    after, said = care
    start = procfs.start_of(sleeper.pid)
    assert start is not None
    state = tmp_path / "state" / STATE_FILE
    state.parent.mkdir()
    state.write_text(escapes.dump_state([escapes.Listed(sleeper.pid, start, "sleep 1000"),
                                         escapes.Listed(sleeper.pid, start + 1, "reused")],
                                        procfs.boot_id()))
    after.warn_at_start()
    assert said[0].startswith("Warning: 1 process listed at the end of your last")
    assert said[-1] == f"To stop them: kill {sleeper.pid}"
    assert logged(after)[-1] == {**logged(after)[-1], "event": "still_running",
                                 "pids": [sleeper.pid]}
    sleeper.kill()
    sleeper.wait()
    said.clear()
    after.warn_at_start()
    assert said == [] and not state.exists()  # nothing left to warn about
