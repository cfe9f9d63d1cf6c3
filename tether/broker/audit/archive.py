"""An export bundle's zip, read as hostile input.

A zip can say one thing to Python and another to ``unzip``: two members
with one name (Python's reader takes the last, ``unzip`` the first), names
that climb out of the folder it is extracted to, symbolic links, members no
signed event accounts for, and a few hundred kilobytes that inflate to
gigabytes. :class:`Members` refuses all of that before a byte is believed:

* every name once; only ``manifest.json``, ``events.jsonl``,
  ``checkpoints.jsonl`` and relative paths under ``recordings/`` (no ``..``,
  no empty or dot parts, no backslash, drive or NUL); regular files only,
  stored or deflated, not encrypted;
* the JSON members are read streamed with caps, counted as bytes come out (a
  header's sizes are checked, never trusted alone): :data:`MAX_LINE` per
  line; ``events.jsonl`` and ``checkpoints.jsonl`` no further than (a line
  past) the size the signed manifest gives them; the manifest itself (read before its signature
  can be checked) at most :data:`MAX_MANIFEST`, and over :data:`RATIO_FLOOR`
  at most :data:`MAX_JSON_RATIO` bytes out per byte in (bundles exported
  before sizes were signed get that ratio bound for every JSON member);
* a recording is read only if a sealed event names it, and only as many
  bytes as that event sealed (its size is signed; a header saying otherwise
  is refused); genuine recordings may compress 1000:1 (a ``yes`` flood), so
  their bound is the signed size, not a ratio;
* once the walk knows which recordings the signed events seal, any member
  left over is refused (:meth:`Members.only`).

Every refusal is :class:`UnsafeBundle`, naming the member.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import IO, Protocol

#: the members every bundle has, besides its recordings
FIXED = ("manifest.json", "events.jsonl", "checkpoints.jsonl")
#: one line of events.jsonl or checkpoints.jsonl (an event's detail is at most a control
#: message, 64 KiB; a checkpoint line ~400 bytes)
MAX_LINE = 1 << 20
#: the manifest: its list of events carried in full is ~11 bytes an event, so this is
#: about 6 million events in one export
MAX_MANIFEST = 64 << 20
#: JSON members full of hex digests and signatures compress 2-10:1; a bomb ~1000:1
MAX_JSON_RATIO = 100
#: a JSON member smaller than this is never refused for its ratio
RATIO_FLOOR = 1 << 20
_BLOCK = 1 << 20


class Readable(Protocol):
    """What is read of a recording: a file on disk, or a capped bundle member."""

    def read(self, n: int = ..., /) -> bytes: ...

    def close(self) -> None: ...


class UnsafeBundle(Exception):
    """The zip is not one the exporter could have written; the message names the member."""


def safe_name(name: str) -> bool:
    """A member name the exporter writes: a fixed name, or a plain path under recordings/."""
    if name in FIXED:
        return True
    if ("\\" in name or "\0" in name or ":" in name or name.startswith("/")
            or not name.isprintable()):
        return False
    parts = name.split("/")
    return (len(parts) >= 2 and parts[0] == "recordings"
            and all(p not in ("", ".", "..") for p in parts)
            and not PurePosixPath(name).is_absolute())


class Members:
    """The checked members of a bundle's zip, by name."""

    def __init__(self, zf: zipfile.ZipFile) -> None:
        self.zf = zf
        self.by_name: dict[str, zipfile.ZipInfo] = {}
        for info in zf.infolist():
            name = info.orig_filename
            shown = repr(name)
            if name in self.by_name:
                raise UnsafeBundle(f"the bundle holds two members named {shown}: a zip"
                                   " reader would show one and hide the other")
            if not safe_name(name) or info.filename != name:
                raise UnsafeBundle(f"bundle member {shown} has a name an export never has"
                                   " (absolute, '..', or outside recordings/)")
            kind = stat.S_IFMT(info.external_attr >> 16)
            if info.is_dir() or kind not in (0, stat.S_IFREG):
                what = "a symbolic link" if kind == stat.S_IFLNK else "not a regular file"
                raise UnsafeBundle(f"bundle member {shown} is {what}")
            if info.flag_bits & 0x1:
                raise UnsafeBundle(f"bundle member {shown} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise UnsafeBundle(f"bundle member {shown} uses a compression an export"
                                   " never uses")
            self.by_name[name] = info

    def _open(self, name: str) -> tuple[zipfile.ZipInfo, IO[bytes]]:
        info = self.by_name.get(name)
        if info is None:
            raise KeyError(name)
        return info, self.zf.open(info)

    def _json_cap(self, info: zipfile.ZipInfo, cap: int | None) -> int:
        """How many bytes this JSON member may give, from its header and the limits."""
        limit = max(RATIO_FLOOR, MAX_JSON_RATIO * info.compress_size)
        if cap is not None:
            limit = min(limit, cap)
        if info.file_size > limit:
            raise UnsafeBundle(_too_big(info.orig_filename, info.file_size, info.compress_size))
        return limit

    def read_json(self, name: str, cap: int = MAX_MANIFEST) -> bytes:
        """A whole (small) JSON member, read with a cap."""
        info, f = self._open(name)
        limit = self._json_cap(info, cap)
        with f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise UnsafeBundle(_too_big(name, len(data), info.compress_size))
        return data

    def lines(self, name: str, size: int | None = None) -> Iterator[tuple[int, bytes]]:
        """(line number, line) of a JSON-lines member, blank lines skipped, streamed.

        ``size``: what the signed manifest says it holds. Reading stops just past it
        (by at most a line), but no sooner: a changed event is reported as such by
        the walk, not as a change of size."""
        info, f = self._open(name)
        limit = self._json_cap(info, None) if size is None else size
        seen = 0
        with f:
            for n in range(1, 1 << 62):
                if seen > limit:
                    raise UnsafeBundle(f"bundle member {name!r} holds more than the {limit}"
                                       " bytes " + ("it may" if size is None else
                                                    "its manifest signed"))
                line = f.readline(MAX_LINE + 1)
                if not line:
                    return  # a short member: the walk says what is missing, better than we can
                seen += len(line)
                if len(line) > MAX_LINE:
                    raise UnsafeBundle(f"{name} line {n} is longer than {MAX_LINE >> 20} MiB")
                if line.strip():
                    yield n, line

    def recording(self, name: str, size: int | None) -> Readable | None:
        """A recording's bytes, at most ``size`` (what its sealing event says)."""
        try:
            info, f = self._open(name)
        except KeyError:
            return None
        if size is not None and info.file_size != size:
            f.close()
            raise UnsafeBundle(_not_signed(name, info.file_size, size, "sealing event"))
        return _Capped(f, name, info.file_size if size is None else size)

    def only(self, listed: set[str]) -> None:
        """Refuse any member the signed events do not account for."""
        extra = sorted(set(self.by_name) - listed - set(FIXED))
        if extra:
            raise UnsafeBundle(f"bundle member {extra[0]!r} is not sealed by any event in the"
                               " bundle (an unsigned file was added)")


def _not_signed(name: str, size: int, signed: int, where: str) -> str:
    return (f"bundle member {name!r} says it holds {size} bytes, not the {signed} its"
            f" {where} signed")


def _too_big(name: str, size: int, packed: int) -> str:
    return (f"bundle member {name!r} inflates to more than {size} bytes from {packed}:"
            " too large or too compressed for an export (a zip bomb?)")


class _Capped:
    """A member's stream that refuses to give more than ``cap`` bytes."""

    def __init__(self, f: IO[bytes], name: str, cap: int) -> None:
        self._f, self._name, self._left = f, name, cap

    def read(self, n: int = _BLOCK) -> bytes:
        data = self._f.read(min(n if n > 0 else _BLOCK, self._left + 1))
        self._left -= len(data)
        if self._left < 0:
            raise UnsafeBundle(f"bundle member {self._name!r} holds more bytes than were"
                               " sealed")
        return data

    def close(self) -> None:
        self._f.close()
