"""pytest plugin loaded by scripts/test.sh (``-p tether_installed_check``).

The suite must test the *installed* ``tether`` (built by ``pip install .``, with
the front-end assets the build hook copies), not the source tree beside it.
pytest's default import mode may put the repository root on ``sys.path`` (a
root ``conftest.py``, or ``tests/__init__.py``), which would shadow the
installed package. This plugin imports ``tether`` before collection, so the
installed one is the one cached in ``sys.modules``, reports its path in the
header, and stops the run if, after collection, ``tether`` comes from anywhere
but this interpreter's site-packages.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path

import pytest

# Keep this folder out of the environment of processes the tests start.
_HERE = str(Path(__file__).resolve().parent)
_parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
_rest = [p for p in _parts if str(Path(p).resolve()) != _HERE]
if _rest:
    os.environ["PYTHONPATH"] = os.pathsep.join(_rest)
else:
    os.environ.pop("PYTHONPATH", None)

_SITE_DIRS = {
    Path(sysconfig.get_path(name)).resolve() for name in ("purelib", "platlib")
}


def _tether_origin() -> Path:
    import tether

    return Path(tether.__file__).resolve()


def _is_installed(path: Path) -> bool:
    return any(site in path.parents for site in _SITE_DIRS)


_FIRST = _tether_origin()


def pytest_report_header(config: pytest.Config) -> str:
    return f"tether under test: {_FIRST.parent}"


def _check(origin: Path) -> None:
    if not _is_installed(origin) or origin != _FIRST:
        sites = ", ".join(sorted(str(s) for s in _SITE_DIRS))
        pytest.exit(
            f"tests would import tether from {origin.parent}, not the installed "
            f"package in {sites}; run `make test`, which installs it with pip install .",
            returncode=3,
        )


def pytest_sessionstart(session: pytest.Session) -> None:
    _check(_FIRST)


def pytest_collection_finish(session: pytest.Session) -> None:
    mod = sys.modules.get("tether")
    _check(Path(mod.__file__).resolve() if mod and mod.__file__ else _FIRST)
