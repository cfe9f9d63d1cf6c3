"""asciicast v2 recordings (broker/recording/cast.py), written to real files."""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from tether.broker.recording.cast import CastWriter
from tether.protocol import sealed


def read_cast(path: Path) -> tuple[dict[str, Any], list[list[Any]]]:
    lines = path.read_bytes().decode("utf-8").splitlines()
    header = json.loads(lines[0])
    return header, [json.loads(line) for line in lines[1:]]


@pytest.fixture
def cast_path(tmp_path: Path) -> Path:
    return tmp_path / "recordings" / "s_1" / "c_1.cast"


def test_header_is_asciicast_v2(cast_path: Path) -> None:
    w = CastWriter(cast_path, 132, 43, title="Alice Martin on bob-laptop")
    w.close()
    header, events = read_cast(cast_path)
    assert header["version"] == 2
    assert header["width"] == 132 and header["height"] == 43
    assert isinstance(header["timestamp"], int) and header["timestamp"] > 1_600_000_000
    assert header["title"] == "Alice Martin on bob-laptop"
    assert header["env"]["TERM"]
    assert events == []


def test_output_input_resize_and_markers_are_events(cast_path: Path) -> None:
    w = CastWriter(cast_path, 80, 24, title="t")
    w.output(b"$ ")
    w.input(b"ls\r")
    w.output(b"file.txt\r\n")
    w.resize(100, 30)
    w.marker("channel opened")
    w.close()
    _, events = read_cast(cast_path)
    assert [e[1:] for e in events] == [
        ["o", "$ "],
        ["i", "ls\r"],
        ["o", "file.txt\r\n"],
        ["r", "100x30"],
        ["m", "channel opened"],
    ]
    times = [e[0] for e in events]
    assert all(isinstance(t, int | float) and t >= 0 for t in times)
    assert times == sorted(times)


def test_terminal_bytes_are_recorded_exactly(cast_path: Path) -> None:
    raw = b"\x1b[1;31mred\x1b[0m \x1b]0;title\x07 tab\there \x00 bell\x07 \"quotes\" \\"
    w = CastWriter(cast_path, 80, 24, title="t")
    w.output(raw)
    w.close()
    _, events = read_cast(cast_path)
    assert events[0][1:] == ["o", raw.decode()]


@pytest.mark.parametrize("char", ["é", "€", "日", "🙂"])
def test_a_utf8_character_split_between_outputs_is_written_whole(cast_path: Path,
                                                                 char: str) -> None:
    data = ("a" + char + "b").encode()
    w = CastWriter(cast_path, 80, 24, title="t")
    for i in range(len(data)):  # one byte per frame: every possible split
        w.output(data[i:i + 1])
    w.close()
    _, events = read_cast(cast_path)
    assert "".join(e[2] for e in events if e[1] == "o") == "a" + char + "b"
    assert all("\ufffd" not in e[2] for e in events)


def test_a_split_character_in_input_is_written_whole(cast_path: Path) -> None:
    w = CastWriter(cast_path, 80, 24, title="t")
    w.input("ü".encode()[:1])
    w.output(b"x")  # output in between does not disturb input's decoder
    w.input("ü".encode()[1:])
    w.close()
    _, events = read_cast(cast_path)
    assert [e[1:] for e in events] == [["o", "x"], ["i", "ü"]]


def test_invalid_utf8_keeps_the_file_valid(cast_path: Path) -> None:
    w = CastWriter(cast_path, 80, 24, title="t")
    w.output(b"ok \xff\xfe bad")
    w.output("€".encode()[:2])  # cut short by the end of the channel
    w.close()
    _, events = read_cast(cast_path)  # decodes as UTF-8 and parses as JSON lines
    text = "".join(e[2] for e in events if e[1] == "o")
    assert text.startswith("ok ") and text.endswith("\ufffd")
    assert " bad" in text


def test_close_returns_the_sha256_of_the_file(cast_path: Path) -> None:
    w = CastWriter(cast_path, 80, 24, title="t")
    for i in range(100):
        w.output(f"line {i} ✓\r\n".encode())
        w.input(b"x")
    digest = w.close()
    data = cast_path.read_bytes()
    assert digest == hashlib.sha256(data).hexdigest()
    assert w.size == len(data)
    assert w.close() == digest  # closing twice is harmless and gives the same seal


def test_close_seals_a_pending_partial_character(cast_path: Path) -> None:
    w = CastWriter(cast_path, 80, 24, title="t")
    w.output("日".encode()[:2])
    digest = w.close()
    assert digest == hashlib.sha256(cast_path.read_bytes()).hexdigest()
    _, events = read_cast(cast_path)
    assert events[-1][1:] == ["o", "\ufffd"]


def test_an_existing_recording_is_never_overwritten(cast_path: Path) -> None:
    w = CastWriter(cast_path, 80, 24, title="first")
    w.output(b"evidence")
    digest = w.close()
    with pytest.raises(FileExistsError):
        CastWriter(cast_path, 80, 24, title="second")
    assert hashlib.sha256(cast_path.read_bytes()).hexdigest() == digest


def test_recording_directory_is_private(cast_path: Path) -> None:
    CastWriter(cast_path, 80, 24, title="t").close()
    assert cast_path.parent.stat().st_mode & 0o077 == 0


# --- a full disk ---------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 16 KiB tmpfs (needs root, as in CI and the dev container)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        gc.collect()  # drop file objects kept alive only by tracebacks
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            # something still holds a file open there (a test says what): detach anyway
            subprocess.run(["umount", "-l", str(mnt)], check=True)


def open_files_under(directory: Path) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith(str(directory)):
                found.append(target)
    return found


def test_a_full_disk_stops_the_recording_and_the_seal_matches_the_file(tiny_fs: Path) -> None:
    """Writes happen on the recorder's own thread: the failure is reported (once, to the
    callback the relay sets), later writes are refused, and the seal covers exactly the
    bytes that reached the disk."""
    path = tiny_fs / "s_1" / "c_1.cast"
    w = CastWriter(path, 80, 24, title="t")
    failures: list[OSError] = []
    w.sink.on_failure = failures.append
    chunk = b"0123456789abcdef" * 256  # 4 KiB of output per frame
    refused = None
    for _ in range(64):  # 256 KiB, far more than the filesystem holds
        try:
            w.output(chunk)
        except OSError as exc:
            refused = exc
            break
    seal = w.sink.close()
    assert len(failures) == 1 and failures[0].errno == errno.ENOSPC
    assert w.sink.error is failures[0]
    assert seal.error  # the seal says the recording is incomplete, and why
    assert seal.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert seal.bytes == path.stat().st_size == w.size
    with pytest.raises(OSError):
        w.output(b"after the failure")
    assert refused is None or refused.errno == errno.ENOSPC


def test_no_recording_can_start_on_a_full_disk(tiny_fs: Path) -> None:
    filler = tiny_fs / "filler"
    with pytest.raises(OSError), filler.open("wb") as f:
        for _ in range(64):
            f.write(b"\0" * 1024)
            f.flush()
    with pytest.raises(OSError) as info:
        CastWriter(tiny_fs / "s_1" / "c_1.cast", 80, 24, title="t" * 4096)
    assert info.value.errno == errno.ENOSPC


def test_a_recording_that_cannot_start_leaves_no_file_open(tiny_fs: Path) -> None:
    filler = tiny_fs / "filler"
    with pytest.raises(OSError), filler.open("wb") as f:
        for _ in range(64):
            f.write(b"\0" * 1024)
            f.flush()
    try:
        CastWriter(tiny_fs / "s_1" / "c_1.cast", 80, 24, title="t" * 4096)
    except OSError as exc:
        # while the error is still being handled (logged, wrapped, re-raised)
        # the half-made writer must not hold its file open
        assert exc.errno == errno.ENOSPC
        assert open_files_under(tiny_fs) == []
    else:
        pytest.fail("the recording started on a full disk")


# --- input typed while the customer's terminal hides it ------------------------------


def test_hidden_input_is_never_in_the_recording_only_its_runs(cast_path: Path) -> None:
    w = CastWriter(cast_path, 80, 24, title="t")
    w.input(b"read -s X\r")
    w.hidden_input(b"hunt")
    w.hidden_input(b"er2\r")  # one password: one run
    w.hidden_input(b"y")
    w.end_hidden()  # echo came back
    w.hidden_input(b"zz")  # still hidden when the channel ends
    w.close()
    text = cast_path.read_text()
    assert "hunter2" not in text and "hunt" not in text and "zz" not in text
    _, events = read_cast(cast_path)
    assert [e[1:] for e in events] == [["i", "read -s X\r"],
                                       ["m", "hidden input (8 bytes)"],
                                       ["m", "hidden input (1 bytes)"],
                                       ["m", "hidden input (2 bytes)"]]
    assert not (cast_path.parent / "c_1.hidden.jsonl").exists() and w.companions == []


def test_with_a_reveal_key_hidden_input_is_sealed_beside_the_recording(cast_path: Path) -> None:
    key = X25519PrivateKey.generate()
    w = CastWriter(cast_path, 80, 24, title="t", reveal_to=key.public_key())
    w.hidden_input(b"hunt")
    w.hidden_input(b"er2\r")
    w.hidden_input(b"ls\r")
    w.close()
    hidden = cast_path.parent / "c_1.hidden.jsonl"
    raw = hidden.read_bytes()
    assert b"hunt" not in raw and b"hunt" not in cast_path.read_bytes()
    lines = raw.splitlines()
    recipient, channel, started_us = sealed.parse_header(lines[0])
    assert (recipient, channel, started_us) == (sealed.key_id(key.public_key()), "c_1",
                                                w.started_us)
    records = [sealed.parse_record(line) for line in lines[1:]]
    assert [(r.n, r.run, r.open(key, "c_1")) for r in records] == [
        (0, 0, b"hunt"), (1, 0, b"er2\r"), (2, 1, b"ls\r")]
    (companion,) = w.companions
    assert companion.path == hidden and companion.kind == "hidden-input"
    assert companion.seal.sha256 == hashlib.sha256(raw).hexdigest()
    assert companion.seal.bytes == len(raw)


def test_a_recording_whose_hidden_input_file_cannot_open_does_not_start(
        cast_path: Path) -> None:
    cast_path.parent.mkdir(parents=True)
    (cast_path.parent / "c_1.hidden.jsonl").write_bytes(b"someone else's")
    with pytest.raises(FileExistsError):
        CastWriter(cast_path, 80, 24, title="t",
                   reveal_to=X25519PrivateKey.generate().public_key())
    assert not cast_path.exists()


def test_a_failed_hidden_input_write_fails_the_recording(tiny_fs: Path) -> None:
    """Fail closed as one recording: the relay hears of it through the recording's hook."""
    path = tiny_fs / "s_1" / "c_1.cast"
    w = CastWriter(path, 80, 24, title="t", reveal_to=X25519PrivateKey.generate().public_key())
    failures: list[OSError] = []
    w.sink.on_failure = failures.append
    refused = None
    for _ in range(64):  # 512 KiB sealed: far more than the filesystem holds
        try:
            w.hidden_input(b"x" * 8192)
        except OSError as exc:
            refused = exc
            break
    w.hidden.close()
    w.sink.close()
    assert len(failures) == 1 and failures[0].errno == errno.ENOSPC
    assert w.sink.error is failures[0]
    with pytest.raises(OSError):
        w.output(b"after the failure")
    assert refused is None or refused.errno == errno.ENOSPC
