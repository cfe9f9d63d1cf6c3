"""protocol/ is sans-I/O: importing it pulls in no event loop or network library."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import tether.protocol

FORBIDDEN = ("asyncio", "aiohttp", "websockets", "asyncssh")
MODULES = sorted(
    ["tether.protocol"]
    + [f"tether.protocol.{m.name}" for m in pkgutil.iter_modules(tether.protocol.__path__)]
)

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {forbidden!r})))
"""


def imported_after(*modules: str) -> list[str]:
    code = PROBE.format(forbidden=set(FORBIDDEN))
    out = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def test_the_package_has_the_expected_modules() -> None:
    for name in ("canon", "channels", "checkpoint", "codes", "consent", "errors", "messages",
                 "sanitize", "sealed", "states", "terminal", "vocabulary"):
        assert f"tether.protocol.{name}" in MODULES


def test_importing_all_of_protocol_imports_no_io_library() -> None:
    assert imported_after(*MODULES) == []


def test_each_protocol_module_alone_imports_no_io_library() -> None:
    for name in MODULES:
        assert imported_after(name) == [], name


def test_the_probe_would_notice_an_io_import() -> None:
    assert "asyncio" in imported_after("asyncio")
