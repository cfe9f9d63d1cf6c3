"""``tether-broker audit export`` bundles, checked where there is no broker at all.

A real data directory holds two sessions whose events interleave, over two
UTC days, with one sealed recording each and a checkpoint every 5 events.
A bundle is exported, copied somewhere else, the data directory deleted, and
``audit verify --bundle FILE --key-fingerprint FP`` run on the copy: it must
pass as exported, show nothing of the other session but digests, and fail on
any change made inside the zip.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import re
import shutil
import sqlite3
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.broker.audit.test_verify import WHEN, add_events, cli, fingerprint_of, init_data, sealed
from tests.helpers import run_cli
from tether.broker.audit.log import AuditLog
from tether.broker.audit.verify import statement_bytes
from tether.broker.certs import load_audit_key
from tether.broker.cli import main
from tether.broker.store.sqlite import Store
from tether.protocol.canon import row_canon
from tether.protocol.checkpoint import Checkpoint, key_fingerprint

REC_A = "recordings/s_a/c_1.cast"
REC_B = "recordings/s_b/c_2.cast"
CAST_A = b'{"version": 2, "width": 80, "height": 24}\n[0.2, "o", "session A output\\r\\n"]\n'
CAST_B = b'{"version": 2, "width": 80, "height": 24}\n[0.3, "o", "SECRET-OF-B\\r\\n"]\n'
DAY1, DAY2 = "2024-03-01", "2024-03-02"

#: seq n is EVENTS[n - 1]; events 1..8 on DAY1, 9..14 on DAY2; checkpoints at 5, 10, 14
EVENTS: list[tuple[str, dict[str, Any]]] = [
    ("broker.started", {"actor": "broker"}),
    ("session.created", {"actor": "customer", "session_id": "s_a", "ip": "10.0.0.1",
                         "machine": "Zoë's laptop"}),
    ("session.created", {"actor": "customer", "session_id": "s_b", "ip": "10.0.0.2",
                         "machine": "SECRET-OF-B host"}),
    ("session.claimed", {"actor": "alice", "session_id": "s_a", "ip": "10.0.0.7"}),
    ("session.claimed", {"actor": "bob", "session_id": "s_b", "ip": "10.0.0.8"}),
    ("recording.started", {"actor": "broker", "session_id": "s_a", "channel": "c_1",
                           "path": REC_A}),
    ("recording.started", {"actor": "broker", "session_id": "s_b", "channel": "c_2",
                           "path": REC_B}),
    ("channel.closed", {"actor": "alice", "session_id": "s_a", "channel": "c_1",
                        "reason": "done"}),
    ("recording.sealed", {"actor": "broker", "session_id": "s_a", "channel": "c_1",
                          **sealed(REC_A, CAST_A)}),
    ("channel.closed", {"actor": "bob", "session_id": "s_b", "channel": "c_2",
                        "reason": "done"}),
    ("recording.sealed", {"actor": "broker", "session_id": "s_b", "channel": "c_2",
                          **sealed(REC_B, CAST_B)}),
    # as the core writes it: the channels that were recorded are listed at the end
    ("session.ended", {"actor": "alice", "session_id": "s_a", "reason": "ended by Alice",
                       "recordings": ["c_1"]}),
    ("session.ended", {"actor": "bob", "session_id": "s_b", "reason": "ended by Bob",
                       "recordings": ["c_2"]}),
    ("broker.stopped", {"actor": "broker"}),
]
A_SEQS = [2, 4, 6, 8, 9, 12]
A_SEALED = 9
A_OK = ["OK: 13 events, 3 checkpoints, 1 recordings",
        "6 events in full, 7 as digests, events 2..14 (session s_a)"]


def day_us(day: str) -> int:
    d = dt.date.fromisoformat(day)
    return int(dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()) * 1_000_000


class Clock:
    """``now_us`` for the audit log: strictly increasing, set to a chosen day."""

    def __init__(self, start: int) -> None:
        self.t = start

    def __call__(self) -> int:
        self.t += 1000
        return self.t


async def write_two_days(data: Path, clock: Clock) -> None:
    store = await Store.open(data / "tether.db")
    audit = AuditLog(store, load_audit_key(data / "certs"), data=data, every=5, interval=3600)
    await audit.start()
    try:
        for n, (action, kw) in enumerate(EVENTS, 1):
            if n == 9:
                clock.t = day_us(DAY2) + 9 * 3600 * 1_000_000
            await audit.append(action, **kw)
    finally:
        await audit.close()
        await store.close()


async def append_unsigned(data: Path, events: list[tuple[str, dict[str, Any]]]) -> None:
    store = await Store.open(data / "tether.db")
    audit = AuditLog(store)
    await audit.start()
    try:
        for action, kw in events:
            await audit.append(action, **kw)
    finally:
        await audit.close()
        await store.close()


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("pristine") / "data"
    init_data(data)
    for path, content in ((REC_A, CAST_A), (REC_B, CAST_B)):
        (data / path).parent.mkdir(parents=True)
        (data / path).write_bytes(content)
    clock = Clock(day_us(DAY1) + 9 * 3600 * 1_000_000)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("tether.broker.audit.log.now_us", clock)
        asyncio.run(write_two_days(data, clock))
    return data


@pytest.fixture
def data(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(pristine, copy)
    return copy


@pytest.fixture
def fp(pristine: Path) -> str:
    return fingerprint_of(pristine)


@pytest.fixture(scope="module")
def bundle_a(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundle for session s_a, exported once for the module."""
    out = tmp_path_factory.mktemp("export") / "s_a.zip"
    code = _export(pristine, "--session", "s_a", "--out", str(out))
    assert code == 0
    return out


def _export(data: Path, *args: str) -> int:
    """``tether-broker audit export --data DIR ARGS`` in this process: the exit code."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        return main(["audit", "export", "--data", str(data), *args])
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def verify_bundle(capsys: pytest.CaptureFixture[str], bundle: Path, fp: str) -> tuple[int, str]:
    return cli(capsys, "audit", "verify", "--bundle", str(bundle), "--key-fingerprint", fp)


def members(bundle: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(bundle) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def jsonl(raw: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


def to_jsonl(objs: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(o, ensure_ascii=False).encode() + b"\n" for o in objs)


def rewrite(src: Path, dst: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of the bundle with its members changed by ``change`` (as anyone can)."""
    files = members(src)
    change(files)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, content in files.items():
            zf.writestr(name, content)
    return dst


def edit_events(change: Callable[[list[dict[str, Any]]], None]) -> Callable[[dict[str, bytes]],
                                                                          None]:
    def edit(files: dict[str, bytes]) -> None:
        events = jsonl(files["events.jsonl"])
        change(events)
        files["events.jsonl"] = to_jsonl(events)
    return edit


def by_seq(events: list[dict[str, Any]], seq: int) -> dict[str, Any]:
    (found,) = [e for e in events if e["seq"] == seq]
    return found


def failed(out: str, pattern: str) -> None:
    assert re.fullmatch(f"FAILED: {pattern}\n", out), out


# --- exporting and verifying ----------------------------------------------------------


def test_export_of_a_session_says_what_it_wrote(data: Path, tmp_path: Path, fp: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "a.zip"
    code, text = cli(capsys, "audit", "export", "--data", str(data), "--session", "s_a",
                     "--out", str(out))
    assert code == 0
    assert text.splitlines() == [
        f"Wrote {out}: events 2..14, 6 in full",
        f"Check it with: tether-broker audit verify --bundle {out} --key-fingerprint {fp}",
    ]


def test_a_bundle_verifies_on_another_machine_without_the_data_directory(
        data: Path, tmp_path: Path, fp: str) -> None:
    """Exported with the installed command, copied away, the broker's data deleted:
    the check needs only the zip and the fingerprint noted at ``init``."""
    out = tmp_path / "export.zip"
    run_cli("audit", "export", "--data", str(data), "--session", "s_a", "--out", str(out))
    elsewhere = tmp_path / "auditor"
    elsewhere.mkdir()
    copy = elsewhere / "evidence.zip"
    shutil.copy(out, copy)
    shutil.rmtree(data)
    out.unlink()
    result = run_cli("audit", "verify", "--bundle", str(copy), "--key-fingerprint", fp)
    assert (result.returncode, result.stdout.splitlines()) == (0, A_OK)


def test_the_other_sessions_events_are_only_digests(bundle_a: Path, pristine: Path,
                                                    fp: str) -> None:
    files = members(bundle_a)
    assert sorted(files) == ["checkpoints.jsonl", "events.jsonl", "manifest.json", REC_A]
    assert files[REC_A] == CAST_A
    manifest = json.loads(files["manifest.json"])
    public = load_audit_key(pristine / "certs").public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    signature = manifest.pop("signature")
    assert manifest == {
        "format": "tether-audit-bundle", "version": 1, "scope": {"session": "s_a"},
        "public_key": public.hex(), "start_seq": 2, "end_seq": 14, "full": A_SEQS,
        "start_head": _db(pristine, "SELECT prev_hash FROM audit_events WHERE seq = 2")[0][0].hex(),
        # the exact sizes of the JSON-lines members: the verifier reads no more than that
        "files": {"events.jsonl": len(files["events.jsonl"]),
                  "checkpoints.jsonl": len(files["checkpoints.jsonl"])},
    }
    # the audit key signs the manifest, including which events are carried in full
    load_audit_key(pristine / "certs").public_key().verify(
        bytes.fromhex(signature), statement_bytes(manifest))
    events = jsonl(files["events.jsonl"])
    assert [e["seq"] for e in events] == list(range(2, 15))
    rows = {r[0]: r for r in _db(pristine, "SELECT seq, ts_us, session_id, actor, action, ip,"
                                           " detail FROM audit_events")}
    for e in events:
        if e["seq"] in A_SEQS:
            assert e["session_id"] == "s_a"
            assert e["detail"] == json.loads(rows[e["seq"]][6])
        else:
            assert set(e) == {"seq", "digest"}
            assert e["digest"] == hashlib.sha256(row_canon(*rows[e["seq"]])).hexdigest()
    # nothing of session s_b is readable anywhere in the bundle
    for name, content in files.items():
        assert b"s_b" not in content and b"SECRET-OF-B" not in content, name
        assert b"bob" not in content, name
    cps = [Checkpoint.from_json(line) for line in files["checkpoints.jsonl"].splitlines()]
    assert [cp.seq for cp in cps] == [5, 10, 14]
    assert all(cp.key == fp for cp in cps)


def test_the_other_session_has_its_own_bundle(data: Path, tmp_path: Path, fp: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b.zip"
    assert _export(data, "--session", "s_b", "--out", str(out)) == 0
    capsys.readouterr()
    assert verify_bundle(capsys, out, fp) == (
        0, "OK: 12 events, 3 checkpoints, 1 recordings\n"
           "6 events in full, 6 as digests, events 3..14 (session s_b)\n")
    assert sorted(members(out)) == ["checkpoints.jsonl", "events.jsonl", "manifest.json", REC_B]
    assert b"Zo\xc3\xab" not in members(out)["events.jsonl"]


@pytest.mark.parametrize(("since", "until", "lines", "recordings"), [
    (DAY1, DAY1, ["OK: 10 events, 2 checkpoints, 0 recordings",
                  "8 events in full, 2 as digests, events 1..10 "
                  "(2024-03-01 00:00:00 UTC to 2024-03-02 00:00:00 UTC)"], []),
    (DAY2, DAY2, ["OK: 6 events, 2 checkpoints, 2 recordings",
                  "6 events in full, 0 as digests, events 9..14 "
                  "(2024-03-02 00:00:00 UTC to 2024-03-03 00:00:00 UTC)"], [REC_A, REC_B]),
    (DAY1, DAY2, ["OK: 14 events, 3 checkpoints, 2 recordings",
                  "14 events in full, 0 as digests, events 1..14 "
                  "(2024-03-01 00:00:00 UTC to 2024-03-03 00:00:00 UTC)"], [REC_A, REC_B]),
])
def test_export_of_a_date_range(data: Path, tmp_path: Path, fp: str,
                                capsys: pytest.CaptureFixture[str], since: str, until: str,
                                lines: list[str], recordings: list[str]) -> None:
    out = tmp_path / "range.zip"
    assert _export(data, "--since", since, "--until", until, "--out", str(out)) == 0
    capsys.readouterr()
    manifest = json.loads(members(out)["manifest.json"])
    assert manifest["scope"] == {"since_us": day_us(since),
                                 "until_us": day_us(until) + 86_400_000_000}
    assert sorted(n for n in members(out) if n.startswith("recordings/")) == recordings
    code, text = verify_bundle(capsys, out, fp)
    assert (code, text.splitlines()) == (0, lines)


def test_export_of_nothing_says_so(data: Path, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "none.zip"
    assert _export(data, "--since", "2024-02-01", "--until", "2024-02-01",
                   "--out", str(out)) == 1
    assert _export(data, "--session", "s_nobody", "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert err.count("tether-broker: no events to export") == 2


def test_a_session_not_yet_covered_by_a_checkpoint_cannot_be_exported(
        data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    asyncio.run(append_unsigned(data, [
        ("session.created", {"actor": "customer", "session_id": "s_c"}),
        ("session.claimed", {"actor": "alice", "session_id": "s_c"}),
    ]))
    out = tmp_path / "c.zip"
    assert _export(data, "--session", "s_c", "--out", str(out)) == 1
    assert "tether-broker: no signed checkpoint covers event 16 yet" in capsys.readouterr().err
    # the sessions before it still export
    assert _export(data, "--session", "s_a", "--out", str(out)) == 0


def test_a_purged_recording_is_reported_not_missing(data: Path, tmp_path: Path, fp: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    add_events(data, [("recording.purged", {"actor": "broker", "session_id": "s_a",
                                            "channel": "c_1", "path": REC_A,
                                            "sha256": sealed(REC_A, CAST_A)["sha256"],
                                            "reason": "older than 30 days"})])
    (data / REC_A).unlink()
    out = tmp_path / "a.zip"
    assert _export(data, "--session", "s_a", "--out", str(out)) == 0
    capsys.readouterr()
    assert REC_A not in members(out)
    code, text = verify_bundle(capsys, out, fp)
    assert (code, text.splitlines()) == (0, [
        "OK: 14 events, 4 checkpoints, 0 recordings",
        "7 events in full, 7 as digests, events 2..15 (session s_a)",
        "1 recordings were removed by retention (recording.purged)"])


# --- tampering inside the zip ---------------------------------------------------------


CHANGED = (f"event 5: the log up to here does not match the checkpoint signed {WHEN}:"
           " events were changed, removed or reordered")


@pytest.fixture
def check(bundle_a: Path, tmp_path: Path, fp: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """Rewrite the module's bundle with ``change`` and verify it: (code, output)."""
    def run(change: Callable[[dict[str, bytes]], None], trusted: str = fp) -> tuple[int, str]:
        tampered = rewrite(bundle_a, tmp_path / "tampered.zip", change)
        return verify_bundle(capsys, tampered, trusted)
    return run


def test_an_unchanged_rewrite_still_verifies(check: Any) -> None:
    """The tampering tests rewrite the zip; doing so with no change is not a failure."""
    code, out = check(lambda files: None)
    assert (code, out.splitlines()) == (0, A_OK)


@pytest.mark.parametrize(("field", "value"), [
    ("ts_us", 1_700_000_000_000_000),
    ("session_id", "s_other"),
    ("session_id", None),
    ("actor", "mallory"),
    ("action", "nothing.happened"),
    ("ip", "192.0.2.1"),
    ("ip", None),
    ("detail", {"technician": "Mallory"}),
])
def test_a_changed_field_of_an_event_in_full_fails(check: Any, field: str, value: Any) -> None:
    code, out = check(edit_events(lambda evs: by_seq(evs, 4).update({field: value})))
    assert code == 1
    failed(out, CHANGED)


def test_a_changed_recording_seal_fails(check: Any) -> None:
    def change(evs: list[dict[str, Any]]) -> None:
        by_seq(evs, A_SEALED)["detail"]["sha256"] = "0" * 64
    code, out = check(edit_events(change))
    assert code == 1
    failed(out, CHANGED.replace("event 5", "event 10"))


def test_a_changed_digest_fails(check: Any) -> None:
    def change(evs: list[dict[str, Any]]) -> None:
        e = by_seq(evs, 3)
        e["digest"] = ("1" if e["digest"][0] != "1" else "2") + e["digest"][1:]
    code, out = check(edit_events(change))
    assert code == 1
    failed(out, CHANGED)


def test_a_deleted_line_fails(check: Any) -> None:
    code, out = check(edit_events(lambda evs: evs.remove(by_seq(evs, 4))))
    assert code == 1
    failed(out, "event 4: missing or out of order \\(found event 5 next\\)")


def test_swapped_lines_fail(check: Any) -> None:
    def swap(evs: list[dict[str, Any]]) -> None:
        evs[2], evs[3] = evs[3], evs[2]  # events 4 and 5
    code, out = check(edit_events(swap))
    assert code == 1
    failed(out, "event 4: missing or out of order \\(found event 5 next\\)")


def test_swapped_contents_with_their_numbers_kept_fail(check: Any) -> None:
    """Events 6 and 8 (both session s_a) trade places, each keeping its line's seq."""
    def swap(evs: list[dict[str, Any]]) -> None:
        six, eight = by_seq(evs, 6), by_seq(evs, 8)
        six_body = {k: v for k, v in six.items() if k != "seq"}
        six.update({k: v for k, v in eight.items() if k != "seq"})
        eight.update(six_body)
    code, out = check(edit_events(swap))
    assert code == 1
    failed(out, CHANGED.replace("event 5", "event 10"))


def _cut(keep_to: int, drop_checkpoints_after: int) -> Callable[[dict[str, bytes]], None]:
    def cut(files: dict[str, bytes]) -> None:
        files["events.jsonl"] = to_jsonl(
            [e for e in jsonl(files["events.jsonl"]) if e["seq"] <= keep_to])
        files["checkpoints.jsonl"] = b"".join(
            line + b"\n" for line in files["checkpoints.jsonl"].splitlines()
            if Checkpoint.from_json(line).seq <= drop_checkpoints_after)
    return cut


def test_a_cut_tail_fails_on_its_checkpoint(check: Any) -> None:
    code, out = check(_cut(12, 14))
    assert code == 1
    failed(out, f"the log ends at event 12 but a checkpoint signed {WHEN} covers events up"
                " to 14: events were deleted from the end")


def test_a_cut_tail_with_its_checkpoint_removed_fails(check: Any) -> None:
    code, out = check(_cut(12, 10))
    assert code == 1
    failed(out, "the last 2 events are not covered by a signed checkpoint"
                " \\(the bundle was cut short\\)")


def test_a_tail_cut_back_to_an_earlier_checkpoint_fails(check: Any) -> None:
    """Events 11..14 (with s_a's session.ended) and the checkpoint at 14 removed: what is
    left ends on a signed head, but the manifest says the bundle runs to event 14."""
    code, out = check(_cut(10, 10))
    assert code == 1, out
    assert out.startswith("FAILED: ")


def test_an_edited_recording_fails(check: Any) -> None:
    def edit(files: dict[str, bytes]) -> None:
        files[REC_A] = files[REC_A].replace(b"session A", b"session Z")
    code, out = check(edit)
    assert code == 1
    failed(out, f"event {A_SEALED}: recording {REC_A} was altered"
                " \\(its sha256 differs from the sealed one\\)")


def test_a_deleted_recording_fails(check: Any) -> None:
    code, out = check(lambda files: files.pop(REC_A))
    assert code == 1
    failed(out, f"event {A_SEALED}: recording {REC_A} is missing")


def test_a_deleted_recording_whose_seal_was_turned_into_a_digest_fails(
        check: Any, pristine: Path) -> None:
    """The seal replaced by its (correct) digest, so the chain still verifies, and the
    recording taken out: the bundle no longer proves what the session recorded."""
    row = _db(pristine, "SELECT seq, ts_us, session_id, actor, action, ip, detail"
                        f" FROM audit_events WHERE seq = {A_SEALED}")[0]
    digest = hashlib.sha256(row_canon(*row)).hexdigest()

    def hide(files: dict[str, bytes]) -> None:
        files.pop(REC_A)
        events = jsonl(files["events.jsonl"])
        events[events.index(by_seq(events, A_SEALED))] = {"seq": A_SEALED, "digest": digest}
        files["events.jsonl"] = to_jsonl(events)
    code, out = check(hide)
    assert code == 1, out
    assert out == (f"FAILED: event {A_SEALED}: carried as a digest only,"
                   " unlike in the signed export\n")


def _resign_all(key: ed25519.Ed25519PrivateKey,
                replace_manifest_key: bool) -> Callable[[dict[str, bytes]], None]:
    def resign(files: dict[str, bytes]) -> None:
        lines = []
        for line in files["checkpoints.jsonl"].splitlines():
            cp = Checkpoint.from_json(line)
            lines.append(Checkpoint.make(key, cp.seq, bytes.fromhex(cp.head), cp.ts_us,
                                         cp.reason).to_json().encode() + b"\n")
        files["checkpoints.jsonl"] = b"".join(lines)
        if replace_manifest_key:  # and re-sign it, as a forger with their own key would
            manifest = json.loads(files["manifest.json"])
            manifest["public_key"] = key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()
            manifest["signature"] = key.sign(statement_bytes(manifest)).hex()
            files["manifest.json"] = json.dumps(manifest).encode()
    return resign


def test_checkpoints_re_signed_with_another_key_fail(check: Any, fp: str) -> None:
    mallory = ed25519.Ed25519PrivateKey.generate()
    code, out = check(_resign_all(mallory, replace_manifest_key=False))
    assert code == 1
    failed(out, "checkpoint at event 5 \\(checkpoints.jsonl line 1\\): signed by another key"
                f" \\({key_fingerprint(mallory.public_key())}\\), not the audit key {fp}")


def test_a_bundle_re_signed_and_carrying_the_new_key_fails_the_trusted_fingerprint(
        check: Any, fp: str) -> None:
    """An edited event, checkpoints re-signed over the edit, the manifest naming the new
    key: self-consistent, but not signed by the key the auditor trusts."""
    mallory = ed25519.Ed25519PrivateKey.generate()
    resign = _resign_all(mallory, replace_manifest_key=True)

    def forge(files: dict[str, bytes]) -> None:
        edit_events(lambda evs: by_seq(evs, 4).update({"actor": "mallory"}))(files)
        resign(files)
    code, out = check(forge)
    assert code == 1
    failed(out, f"the bundle is signed by the key {key_fingerprint(mallory.public_key())},"
                f" not by the key {fp} you trust")
    # the same forgery checked against the forger's own fingerprint is caught by the chain
    code, out = check(forge, key_fingerprint(mallory.public_key()))
    assert code == 1
    failed(out, CHANGED)


def test_the_wrong_trusted_fingerprint_fails(check: Any, fp: str) -> None:
    other = key_fingerprint(ed25519.Ed25519PrivateKey.generate().public_key())
    code, out = check(lambda files: None, other)
    assert code == 1
    failed(out, f"the bundle is signed by the key {fp}, not by the key {other} you trust")


def _manifest(change: Callable[[dict[str, Any]], Any]) -> Callable[[dict[str, bytes]], None]:
    def edit(files: dict[str, bytes]) -> None:
        manifest = json.loads(files["manifest.json"])
        files["manifest.json"] = json.dumps(change(manifest)).encode()
    return edit


@pytest.mark.parametrize("change", [
    lambda files: files.update({"manifest.json": b"{not json"}),
    lambda files: files.update({"manifest.json": b"\xff\xfe\x00"}),
    lambda files: files.pop("manifest.json"),
    _manifest(lambda m: [m]),
    _manifest(lambda m: {**m, "format": "something-else"}),
    _manifest(lambda m: {**m, "version": 2}),
    _manifest(lambda m: {k: v for k, v in m.items() if k != "start_head"}),
    _manifest(lambda m: {**m, "start_head": "zz" * 32}),
    _manifest(lambda m: {**m, "start_head": m["start_head"][:-2]}),
    _manifest(lambda m: {**m, "start_seq": 0}),
    _manifest(lambda m: {**m, "start_seq": "2"}),
    _manifest(lambda m: {**m, "start_seq": True}),
    _manifest(lambda m: {**m, "public_key": 7}),
])
def test_a_malformed_manifest_fails(check: Any, change: Any) -> None:
    code, out = check(change)
    assert code == 1
    failed(out, "manifest.json is missing or not a Tether bundle manifest")


@pytest.mark.parametrize("key", ["zz", "abcd", ""])
def test_a_malformed_public_key_fails(check: Any, key: str) -> None:
    code, out = check(_manifest(lambda m: {**m, "public_key": key}))
    assert code == 1
    failed(out, "the bundle's public key is malformed")


MANIFEST_CHANGED = ("manifest.json was changed after the export \\(its signature does not"
                    " verify with the audit key\\)")


def test_a_changed_start_head_fails(check: Any) -> None:
    code, out = check(_manifest(lambda m: {**m, "start_head": "00" * 32}))
    assert code == 1
    failed(out, MANIFEST_CHANGED)


@pytest.mark.parametrize("change", [
    lambda m: {**m, "scope": {"session": "s_b"}},  # relabelled
    lambda m: {**m, "full": m["full"][:-1]},  # an event said to be a digest only
    lambda m: {**m, "end_seq": m["end_seq"] - 1},
    lambda m: {**m, "signature": "00" * 64},
])
def test_a_manifest_changed_after_the_export_fails(check: Any, change: Any) -> None:
    code, out = check(_manifest(change))
    assert code == 1
    failed(out, MANIFEST_CHANGED)


@pytest.mark.parametrize(("change", "pattern"), [
    (lambda files: files.pop("events.jsonl"), "events.jsonl is missing from the bundle"),
    (lambda files: files.pop("checkpoints.jsonl"),
     "checkpoints.jsonl is missing from the bundle"),
    (lambda files: files.update({"checkpoints.jsonl": b""}),
     "the bundle carries no signed checkpoint"),
    (lambda files: files.update({"events.jsonl": files["events.jsonl"] + b"{oops\n"}),
     "events.jsonl line 14: not JSON"),
    (edit_events(lambda evs: by_seq(evs, 3).update({"digest": "zz" * 32})),
     "events.jsonl line 2: not an event"),
    (edit_events(lambda evs: by_seq(evs, 3).update({"digest": "ab" * 31})),
     "events.jsonl line 2: not an event"),
    (edit_events(lambda evs: by_seq(evs, 4).update({"extra": 1})),
     "events.jsonl line 3: not an event"),
    (edit_events(lambda evs: by_seq(evs, 4).update({"detail": "text"})),
     "events.jsonl line 3: not an event"),
    (edit_events(lambda evs: by_seq(evs, 4).update({"seq": "4"})),
     "events.jsonl line 3: not an event"),
    (lambda files: files.update({"checkpoints.jsonl": b"[]\n"}),
     "checkpoints.jsonl line 1: not a checkpoint \\(wrong fields\\)"),
])
def test_a_malformed_member_fails(check: Any, change: Any, pattern: str) -> None:
    code, out = check(change)
    assert code == 1
    failed(out, pattern)


@pytest.mark.parametrize("content", [b"", b"not a zip at all\n", b"PK\x03\x04" + b"\x00" * 40])
def test_a_file_that_is_not_a_zip_fails(tmp_path: Path, fp: str, content: bytes,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    bogus = tmp_path / "bundle.zip"
    bogus.write_bytes(content)
    code, out = verify_bundle(capsys, bogus, fp)
    assert code == 1
    failed(out, "bundle.zip is not a readable Tether export bundle \\(.*\\)")


def test_a_missing_bundle_fails(tmp_path: Path, fp: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out = verify_bundle(capsys, tmp_path / "nowhere.zip", fp)
    assert code == 1
    failed(out, "nowhere.zip is not a readable Tether export bundle \\(.*\\)")


def test_a_corrupted_zip_fails_without_a_traceback(bundle_a: Path, tmp_path: Path, fp: str,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    """A byte flipped inside a stored member (bad CRC): reported like any other damage."""
    raw = bytearray(bundle_a.read_bytes())
    with zipfile.ZipFile(bundle_a) as zf:
        info = zf.getinfo("events.jsonl")
    # the member's data starts after its 30-byte local header, name and extra field
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(raw))
    code, out = verify_bundle(capsys, damaged, fp)
    assert code == 1
    assert out.startswith("FAILED: ")


def test_verify_bundle_needs_a_fingerprint(bundle_a: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="--key-fingerprint"):
        cli(capsys, "audit", "verify", "--bundle", str(bundle_a))


def _db(data: Path, query: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(data / "tether.db")
    try:
        return list(con.execute(query))
    finally:
        con.close()
