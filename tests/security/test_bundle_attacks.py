"""Forged export bundles: ``audit verify --bundle`` must refuse what it cannot vouch for.

A real session's bundle (real broker, real client in a PTY, a shell) is exported once;
each test rebuilds that zip the way a forger would and runs the installed
``tether-broker audit verify --bundle`` on it, as an auditor would:

* a second ``events.jsonl`` or recording under the genuine name, placed *before* the
  genuine one (Python's reader takes the last copy, ``unzip`` the first: the auditor
  would be shown the forgery);
* extra files no signed event accounts for, ``../`` and absolute names, symbolic links;
* a zip bomb (a few hundred kB inflating to hundreds of MB): refused from its headers
  and while streaming, with the verifier's peak memory bounded.
"""

from __future__ import annotations

import asyncio
import stat
import subprocess
import sys
import threading
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import PASSWORD, make_broker
from tests.e2e.test_support_session import start_shell
from tests.helpers import Customer, T, Technician, run_cli, script
from tether.broker.certs import load_audit_key
from tether.protocol.checkpoint import key_fingerprint

#: peak memory (RSS) the verifier may reach on a bomb: Python with cryptography loaded
#: is ~40 MB; reading the bomb whole took 847 MB
BOMB_RSS_MB = 150


@dataclass(frozen=True)
class Genuine:
    bundle: Path
    fingerprint: str
    recording: str  # its name inside the zip

    def members(self) -> list[tuple[zipfile.ZipInfo, bytes]]:
        with zipfile.ZipFile(self.bundle) as zf:
            return [(info, zf.read(info)) for info in zf.infolist()]


async def _session(tech: Technician, customer: Customer) -> str:
    sid, cid = await start_shell(tech, customer)
    viewer = await tech.attach(sid, cid)
    await viewer.send("echo genuine-$((6*7))\r")
    await viewer.expect("genuine-42")
    status, _ = await tech.end(sid)
    assert status == 200
    assert await asyncio.to_thread(customer.wait_exit) == 0
    return sid


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Genuine]:
    """One real session's bundle, exported once for the module."""
    tmp = tmp_path_factory.mktemp("bundle")
    broker = make_broker(tmp / "data", "--pair-timeout", "5", "--consent-wait", "8").start()
    customer = Customer(broker, "--consent-timeout", "5", tmp=tmp)
    found: list[str] = []
    errors: list[BaseException] = []

    async def run() -> None:
        tech = Technician(broker)
        try:
            status, _ = await tech.login("alice", PASSWORD)
            assert status == 200
            found.append(await _session(tech, customer))
        finally:
            await tech.close()

    def thread() -> None:  # its own event loop: a test may own this thread's
        try:
            asyncio.run(run())
        except BaseException as exc:
            errors.append(exc)

    try:
        worker = threading.Thread(target=thread)
        worker.start()
        worker.join()
        if errors:
            raise errors[0]
    finally:
        customer.close()
        broker.stop()
    bundle = tmp / "genuine.zip"
    run_cli("audit", "export", "--data", str(broker.data), "--session", found[0],
            "--out", str(bundle))
    with zipfile.ZipFile(bundle) as zf:
        (recording,) = [n for n in zf.namelist() if n.startswith("recordings/")]
    yield Genuine(bundle, key_fingerprint(load_audit_key(broker.data / "certs").public_key()),
                  recording)


def verify(bundle: Path, fingerprint: str) -> tuple[int, str]:
    result = subprocess.run([script("tether-broker"), "audit", "verify", "--bundle",
                             str(bundle), "--key-fingerprint", fingerprint],
                            capture_output=True, text=True, timeout=6 * T)
    return result.returncode, result.stdout + result.stderr


Forge = Callable[[zipfile.ZipFile, Genuine], None]


def forged(genuine: Genuine, tmp_path: Path, before: Forge | None = None,
           after: Forge | None = None, skip: str = "") -> Path:
    """The genuine bundle rewritten member by member, with ``before`` writing first and
    ``after`` last (a forger's tools add members anywhere, under any name)."""
    out = tmp_path / "forged.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        warnings.simplefilter("ignore")  # "Duplicate name": the point of some forgeries
        if before:
            before(zf, genuine)
        for info, content in genuine.members():
            if info.filename != skip:
                zf.writestr(info.filename, content)
        if after:
            after(zf, genuine)
    return out


def test_the_genuine_bundle_and_a_plain_rewrite_verify(genuine: Genuine,
                                                       tmp_path: Path) -> None:
    for bundle in (genuine.bundle, forged(genuine, tmp_path)):
        code, out = verify(bundle, genuine.fingerprint)
        assert code == 0 and out.startswith("OK: "), out


def test_a_forged_events_file_placed_before_the_genuine_one_is_refused(
        genuine: Genuine, tmp_path: Path) -> None:
    def forge(zf: zipfile.ZipFile, g: Genuine) -> None:
        with zipfile.ZipFile(g.bundle) as src:
            events = src.read("events.jsonl").replace(b"\"alice\"", b"\"mallory\"")
        zf.writestr("events.jsonl", events)

    bundle = forged(genuine, tmp_path, before=forge)
    with zipfile.ZipFile(bundle) as zf:  # what unzip (first copy) would show an auditor
        first = next(i for i in zf.infolist() if i.filename == "events.jsonl")
        assert b"mallory" in zf.read(first)
    code, out = verify(bundle, genuine.fingerprint)
    assert code == 1, out
    assert out == ("FAILED: the bundle holds two members named 'events.jsonl': a zip reader"
                   " would show one and hide the other\n")


def test_a_forged_recording_placed_before_the_genuine_one_is_refused(
        genuine: Genuine, tmp_path: Path) -> None:
    def forge(zf: zipfile.ZipFile, g: Genuine) -> None:
        zf.writestr(g.recording, b'{"version": 2, "width": 80, "height": 24}\n'
                                 b'[0.1, "o", "nothing happened here\\r\\n"]\n')

    code, out = verify(forged(genuine, tmp_path, before=forge), genuine.fingerprint)
    assert code == 1, out
    assert out == (f"FAILED: the bundle holds two members named {genuine.recording!r}: a zip"
                   " reader would show one and hide the other\n")


@pytest.mark.parametrize("name", ["notes.txt", "recordings/s_other/c_other.cast",
                                  "recordings/extra/"])
def test_an_unsigned_extra_file_is_refused(genuine: Genuine, tmp_path: Path,
                                           name: str) -> None:
    def forge(zf: zipfile.ZipFile, g: Genuine) -> None:
        zf.writestr(name, b"" if name.endswith("/") else b"planted evidence\n")

    code, out = verify(forged(genuine, tmp_path, after=forge), genuine.fingerprint)
    assert code == 1, out
    if name.startswith("recordings/s_other"):
        assert out == (f"FAILED: bundle member {name!r} is not sealed by any event in the"
                       " bundle (an unsigned file was added)\n")
    else:
        assert out == (f"FAILED: bundle member {name!r} has a name an export never has"
                       " (absolute, '..', or outside recordings/)\n")


@pytest.mark.parametrize("name", ["../evil.sh", "recordings/../../evil.sh", "/etc/cron.d/evil",
                                  "recordings/./x.cast", "recordings\\..\\evil.sh",
                                  "C:/evil.sh"])
def test_a_name_that_climbs_out_or_is_absolute_is_refused(genuine: Genuine, tmp_path: Path,
                                                          name: str) -> None:
    def forge(zf: zipfile.ZipFile, g: Genuine) -> None:
        info = zipfile.ZipInfo("placeholder")
        info.filename = info.orig_filename = name  # ZipInfo() would normalise some of these
        zf.writestr(info, b"touch /tmp/pwned\n")

    code, out = verify(forged(genuine, tmp_path, after=forge), genuine.fingerprint)
    assert code == 1, out
    assert out == (f"FAILED: bundle member {name!r} has a name an export never has"
                   " (absolute, '..', or outside recordings/)\n")


def _symlink(name: str, target: bytes) -> Forge:
    def forge(zf: zipfile.ZipFile, g: Genuine) -> None:
        info = zipfile.ZipInfo(name)
        info.create_system = 3  # Unix: the mode is in the high bits of external_attr
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, target)
    return forge


def test_a_symlink_is_refused(genuine: Genuine, tmp_path: Path) -> None:
    # under the genuine recording's name, with the genuine bytes (they hash right) ...
    with zipfile.ZipFile(genuine.bundle) as zf:
        content = zf.read(genuine.recording)
    bundle = forged(genuine, tmp_path, after=_symlink(genuine.recording, content),
                    skip=genuine.recording)
    code, out = verify(bundle, genuine.fingerprint)
    assert code == 1, out
    assert out == f"FAILED: bundle member {genuine.recording!r} is a symbolic link\n"
    # ... or beside it, pointing out of the folder it would be extracted to
    link = genuine.recording.rsplit("/", 1)[0] + "/key.pem"
    code, out = verify(forged(genuine, tmp_path, after=_symlink(link, b"/etc/shadow")),
                       genuine.fingerprint)
    assert code == 1, out
    assert out == f"FAILED: bundle member {link!r} is a symbolic link\n"


def _bomb(name: str, mib: int) -> Forge:
    """``mib`` MiB of one byte, without a line break, deflated (~1030:1)."""
    def forge(zf: zipfile.ZipFile, g: Genuine) -> None:
        block = b"[" * (1 << 20)
        with zf.open(name, "w", force_zip64=True) as f:
            for _ in range(mib):
                f.write(block)
    return forge


PROBE = """
import resource, subprocess, sys
r = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print(r.returncode, peak, r.stdout.strip(), sep="\\n")
"""


def _probe(bundle: Path, genuine: Genuine) -> tuple[int, int, str]:
    """(exit code, peak RSS in MB, output) of the installed verifier on ``bundle``."""
    probe = subprocess.run(
        [sys.executable, "-c", PROBE, script("tether-broker"), "audit", "verify", "--bundle",
         str(bundle), "--key-fingerprint", genuine.fingerprint],
        capture_output=True, text=True, timeout=12 * T)
    code, peak_mb, out = probe.stdout.split("\n", 2)
    return int(code), int(peak_mb), out.strip()


@pytest.mark.parametrize("name", ["events.jsonl", "manifest.json"])
def test_a_zip_bomb_is_refused_with_bounded_memory(genuine: Genuine, tmp_path: Path,
                                                   name: str) -> None:
    bundle = forged(genuine, tmp_path, before=_bomb(name, 400), skip=name)
    assert bundle.stat().st_size < 1 << 20  # a small file ...
    with zipfile.ZipFile(bundle) as zf:
        assert zf.getinfo(name).file_size == 400 << 20  # ... that inflates to 400 MiB
    code, peak_mb, out = _probe(bundle, genuine)
    assert code == 1, out
    if name == "manifest.json":  # read before its signature can be checked: by its ratio
        assert out == (f"FAILED: bundle member {name!r} inflates to more than"
                       f" {400 << 20} bytes from {_packed(bundle, name)}: too large or"
                       " too compressed for an export (a zip bomb?)")
    else:  # one line, read no further than a line may be
        assert out == f"FAILED: {name} line 1 is longer than 1 MiB"
    assert peak_mb < BOMB_RSS_MB, f"verify peaked at {peak_mb} MB"


def test_a_bomb_whose_header_lies_is_stopped_while_streaming(genuine: Genuine,
                                                             tmp_path: Path) -> None:
    """The header gives the signed size; the stream holds 400 MiB."""
    bundle = forged(genuine, tmp_path, before=_bomb("events.jsonl", 400), skip="events.jsonl")
    _lie_about_size(bundle, "events.jsonl", _size(genuine.bundle, "events.jsonl"))
    code, peak_mb, out = _probe(bundle, genuine)
    assert code == 1, out
    assert out.startswith("FAILED: ") and "'events.jsonl'" in out, out  # zipfile's CRC check
    assert peak_mb < BOMB_RSS_MB, f"verify peaked at {peak_mb} MB"


def _size(bundle: Path, name: str) -> int:
    with zipfile.ZipFile(bundle) as zf:
        return zf.getinfo(name).file_size


def _packed(bundle: Path, name: str) -> int:
    with zipfile.ZipFile(bundle) as zf:
        return zf.getinfo(name).compress_size


def _lie_about_size(bundle: Path, name: str, size: int) -> None:
    """Rewrite the member's uncompressed size in its central directory entry."""
    raw = bytearray(bundle.read_bytes())
    at = raw.find(b"PK\x01\x02")  # the central directory's first entry: the bomb's
    assert raw[at + 46:at + 46 + len(name)] == name.encode()
    raw[at + 24:at + 28] = size.to_bytes(4, "little")  # its uncompressed size
    bundle.write_bytes(bytes(raw))
    with zipfile.ZipFile(bundle) as zf:
        assert zf.getinfo(name).file_size == size


def test_json_members_of_genuine_bundles_are_far_from_the_ratio_limit(
        genuine: Genuine) -> None:
    """The limits must never refuse a real export: its JSON members compress ~2-10:1."""
    with zipfile.ZipFile(genuine.bundle) as zf:
        for name in ("manifest.json", "events.jsonl", "checkpoints.jsonl"):
            info = zf.getinfo(name)
            assert info.file_size < 20 * max(info.compress_size, 1), name
            assert info.compress_type == zipfile.ZIP_DEFLATED


def test_a_line_nested_deep_enough_to_exhaust_the_stack_is_refused(
        genuine: Genuine, tmp_path: Path) -> None:
    """Not a traceback: an auditor gets the same one-line answer as for any other forgery."""
    def forge(zf: zipfile.ZipFile, g: Genuine) -> None:
        with zipfile.ZipFile(g.bundle) as src:
            zf.writestr("events.jsonl", b"[" * 100_000 + b"\n" + src.read("events.jsonl"))

    code, out = verify(forged(genuine, tmp_path, before=forge, skip="events.jsonl"),
                       genuine.fingerprint)
    assert (code, out) == (1, "FAILED: events.jsonl line 1: not JSON\n")
