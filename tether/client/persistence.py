"""Snapshots of the places a program can be set to start later, as the customer's user.

Taken when the first shell of a session opens and again at its end; the pure
:func:`tether.client.escapes.changes` compares them. A snapshot maps a display name
(``~/.bashrc``, ``crontab``) to a digest of what is there (content hash, size, mode,
link target); a missing file has no entry. Directories are walked without following
links and with bounds, so a technician cannot make the end of a session slow by
planting a huge tree. This is a list of the usual places, not a proof: the README
says what else a same-user shell can change.
"""

from __future__ import annotations

import getpass
import hashlib
import itertools
import os
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: most files looked at under one directory
MAX_FILES = 500
#: bytes of a file that are hashed (a longer file's size and change time count too)
MAX_BYTES = 1024 * 1024
CRONTAB_TIMEOUT = 5.0

START_UP_FILES = (".bashrc", ".bash_profile", ".bash_login", ".bash_logout", ".profile",
                  ".zshrc", ".zshenv", ".zprofile", ".zlogin", ".zlogout", ".kshrc", ".mkshrc",
                  ".tcshrc", ".cshrc", ".login", ".xprofile", ".xsessionrc", ".xinitrc",
                  ".xsession", ".pam_environment")


@dataclass(frozen=True)
class Snapshot:
    digests: dict[str, str]
    #: what was looked at, as the customer reads it
    checked: tuple[str, ...]
    #: what could not be looked at, and why
    unchecked: tuple[str, ...] = ()


def _env_dir(name: str, default: Path) -> Path:
    value = os.environ.get(name, "")
    return Path(value) if value.startswith("/") else default


def locations(home: Path) -> dict[str, list[Path]]:
    """The places by the category the customer reads (crontab is asked for separately)."""
    config = _env_dir("XDG_CONFIG_HOME", home / ".config")
    data = _env_dir("XDG_DATA_HOME", home / ".local" / "share")
    runtime = _env_dir("XDG_RUNTIME_DIR", Path(f"/run/user/{os.getuid()}"))
    return {
        "systemd user units": [config / "systemd" / "user", data / "systemd" / "user",
                               runtime / "systemd" / "transient"],
        "~/.ssh/authorized_keys": [home / ".ssh" / "authorized_keys",
                                   home / ".ssh" / "authorized_keys2", home / ".ssh" / "rc"],
        "shell start-up files": [*(home / name for name in START_UP_FILES),
                                 config / "fish", config / "environment.d"],
        "autostart entries": [config / "autostart"],
    }


def _name(path: Path, home: Path) -> str:
    try:
        return "~/" + str(path.relative_to(home))
    except ValueError:
        return str(path)


def _digest(path: Path) -> str | None:
    """What is at ``path`` now (None when nothing is); links are described, then followed
    for files (a start-up file is often a link into a dotfiles repository)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    parts = []
    if stat.S_ISLNK(st.st_mode):
        try:
            parts.append("link:" + os.readlink(path))
            st = os.stat(path)
        except OSError:
            return parts[0] if parts else None
    if stat.S_ISDIR(st.st_mode):
        return " ".join([*parts, "dir"])
    parts.append(f"{st.st_mode:o}:{st.st_size}")
    if not stat.S_ISREG(st.st_mode):
        return " ".join(parts)
    if st.st_size > MAX_BYTES:
        parts.append(str(st.st_mtime_ns))
    try:  # O_NONBLOCK: a file swapped for a FIFO meanwhile must not hang the client
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return " ".join([*parts, "unreadable"])
    try:
        with os.fdopen(fd, "rb") as f:
            parts.append(hashlib.sha256(f.read(MAX_BYTES)).hexdigest())
    except OSError:
        parts.append("unreadable")
    return " ".join(parts)


def _walk(root: Path, home: Path, out: dict[str, str]) -> None:
    """``root`` and, if it is a real directory, what is under it (bounded, no links)."""
    todo = [root]
    seen = 0
    while todo and seen < MAX_FILES:
        path = todo.pop()
        seen += 1
        digest = _digest(path)
        if digest is None:
            continue
        out[_name(path, home)] = digest
        if digest == "dir":  # a directory that is not a link
            try:
                with os.scandir(path) as entries:
                    names = sorted(e.name for e in itertools.islice(entries, MAX_FILES))
                todo.extend(path / name for name in reversed(names))
            except OSError:
                out[_name(path, home)] = "dir unreadable"
    if todo:
        out[_name(root, home) + " (more files)"] = str(len(todo))


def crontab(user: str) -> str | None:
    """A digest of the user's crontab ("" when there is none); None if it cannot be read."""
    binary = shutil.which("crontab")
    if binary:
        try:
            done = subprocess.run([binary, "-l"], capture_output=True, timeout=CRONTAB_TIMEOUT,
                                  stdin=subprocess.DEVNULL, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return hashlib.sha256(done.stdout).hexdigest() if done.returncode == 0 else ""
    for spool in (Path("/var/spool/cron/crontabs"), Path("/var/spool/cron")):
        if os.access(spool, os.R_OK | os.X_OK):
            return _digest(spool / user) or ""
    return None


def snapshot(home: Path | None = None) -> Snapshot:
    home = home or Path.home()
    digests: dict[str, str] = {}
    checked: list[str] = []
    unchecked: list[str] = []
    cron = crontab(getpass.getuser())
    if cron is None:
        unchecked.append("crontab (no crontab command, spool not readable)")
    else:
        checked.append("crontab")
        if cron:
            digests["crontab"] = cron
    for category, paths in locations(home).items():
        for path in paths:
            _walk(path, home, digests)
        checked.append(category)
    return Snapshot(digests, tuple(checked), tuple(unchecked))
