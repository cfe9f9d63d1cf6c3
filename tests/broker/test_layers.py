"""The broker's layers: the core imports no web, SSH or SQL library, nothing imports
upwards, there is no import cycle, and every audit action is in the catalogue."""

from __future__ import annotations

import ast
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import tether
from tether.broker.audit.actions import ACTIONS, ADMIN_USER_ACTIONS

ROOT = Path(tether.__file__).parent
BROKER = ROOT / "broker"

PROBE = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules
                        if m.split(".")[0] in ("aiohttp", "asyncssh", "aiosqlite", "sqlite3",
                                               "_sqlite3", "websockets"))))
"""


def modules(package: str) -> list[str]:
    path = ROOT.joinpath(*package.split(".")[1:])
    return [package] + [f"{package}.{m.name}" for m in pkgutil.iter_modules([str(path)])]


def imported_after(*names: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE, *names], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def test_the_core_imports_no_web_ssh_or_sql_library() -> None:
    assert imported_after(*modules("tether.broker.core")) == []


def test_the_pump_and_recorders_import_no_web_ssh_or_sql_library_either() -> None:
    assert imported_after(*modules("tether.broker.channels"),
                          *modules("tether.broker.recording")) == []


def test_the_probe_would_notice() -> None:
    assert "aiosqlite" in imported_after("tether.broker.store.sqlite")


def _imports(path: Path, package: str) -> set[str]:
    """Modules of tether that ``path`` imports (relative imports resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("tether"):
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tether"))
    return found


def graph() -> dict[str, set[str]]:
    mods: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    edges = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges[name] = {t for t in _imports(path, package) if t in mods and t != name}
    return edges


def test_no_import_cycle_between_modules() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycle = stack[stack.index(node):] + [node]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        if node in done:
            return
        for nxt in sorted(edges[node]):
            # a package's __init__ re-exporting its own modules is not a cycle
            if nxt.startswith(node + "."):
                continue
            visit(nxt, stack + [node])
        done.add(node)

    for node in sorted(edges):
        visit(node, [])


LOWER = {  # a layer may import only these packages of the broker (and protocol)
    "tether.broker.core": {"core", "channels", "recording", "audit.actions", "store.base",
                           "auth.rules", "config", "limits"},
    "tether.broker.channels": {"channels", "recording", "auth.rules"},
    "tether.broker.recording": {"recording", "config"},
    "tether.protocol": set(),
}


def test_layers_import_only_downwards() -> None:
    for name, targets in graph().items():
        for layer, allowed in LOWER.items():
            if name != layer and not name.startswith(layer + "."):
                continue
            for t in targets:
                if t.startswith("tether.protocol"):
                    continue
                rest = t.removeprefix("tether.broker.")
                assert t.startswith("tether.broker.") and any(
                    rest == a or rest.startswith(a + ".") for a in allowed), (name, t)


def test_the_client_imports_nothing_of_the_broker() -> None:
    for name, targets in graph().items():
        if name.startswith("tether.client"):
            assert not any(t.startswith("tether.broker") for t in targets), name


APPEND = re.compile(r"""\.append\(\s*["']([a-z_]+\.[a-z_]+)["']""")
AUDIT_HOOK = re.compile(r"""(?:hooks\.audit|_audit)\([^"']*["']([a-z_]+\.[a-z_]+)["']""")
STEP = re.compile(r"""(?:Event\.[A-Z_]+|None),\s*["']([a-z_]+\.[a-z_]+)["']""")


def test_every_audited_action_is_in_the_catalogue() -> None:
    seen = set()
    for path in BROKER.rglob("*.py"):
        text = path.read_text()
        for pattern in (APPEND, AUDIT_HOOK, STEP):
            seen.update(pattern.findall(text))
    assert seen, "the source scan found no audit call at all"
    # the admin page names its actions through the catalogue's own table
    assert "ADMIN_USER_ACTIONS[action]" in (BROKER / "web" / "admin_views.py").read_text()
    seen |= set(ADMIN_USER_ACTIONS.values())
    assert seen - ACTIONS == set()
    # and the catalogue holds nothing the broker never writes
    assert ACTIONS - seen == set()
