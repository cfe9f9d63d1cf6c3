"""Hatchling build hook: put the web console's files into the package.

Copies, before every build (wheel, editable wheel, sdist):

* ``web/templates/*``  -> ``tether/broker/templates/``
* ``web/src/*``        -> ``tether/broker/static/``
* the dist files the pages use from ``web/node_modules`` (installed by
  ``npm ci`` in ``web/`` from ``web/package-lock.json``) -> ``tether/broker/static/vendor/``

and generates ``tether/broker/static/strings.js`` (the vocabulary the page
scripts import: labels, close codes, channel kinds, terminal controls, the
control-character class) from ``tether.protocol.vocabulary.strings_js()``,
imported from this source tree (that package uses only the standard library,
so it imports inside pip's isolated build environment).

Both targets are generated (gitignored) and are listed as wheel ``artifacts``
in pyproject.toml. The sdist carries them too, so a wheel built from an sdist
(which has no node_modules) reuses them. Nothing is fetched from a network.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

NPM_HINT = "run `npm ci` in web/ first"

# (file or directory under web/node_modules, destination under static/)
VENDOR_FILES: list[tuple[str, str]] = [
    # xterm.js 6 (ES module build; the DOM renderer is built in)
    ("@xterm/xterm/lib/xterm.mjs", "vendor/xterm/xterm.mjs"),
    ("@xterm/xterm/lib/xterm.js", "vendor/xterm/xterm.js"),
    ("@xterm/xterm/css/xterm.css", "vendor/xterm/xterm.css"),
    ("@xterm/xterm/LICENSE", "vendor/xterm/LICENSE"),
    ("@xterm/addon-fit/lib/addon-fit.mjs", "vendor/xterm/addon-fit.mjs"),
    ("@xterm/addon-fit/lib/addon-fit.js", "vendor/xterm/addon-fit.js"),
    (
        "@xterm/addon-web-links/lib/addon-web-links.mjs",
        "vendor/xterm/addon-web-links.mjs",
    ),
    ("@xterm/addon-web-links/lib/addon-web-links.js", "vendor/xterm/addon-web-links.js"),
    # noVNC: ES modules; core/ imports ../vendor/pako/, so keep that layout.
    ("@novnc/novnc/core", "vendor/novnc/core"),
    ("@novnc/novnc/vendor/pako", "vendor/novnc/vendor/pako"),
    ("@novnc/novnc/LICENSE.txt", "vendor/novnc/LICENSE.txt"),
    # asciinema-player: standalone bundles (classic scripts) and stylesheet
    *[
        (f"asciinema-player/dist/bundle/{name}", f"vendor/asciinema-player/{name}")
        for name in (
            "asciinema-player.min.js",
            "asciinema-player-ui.min.js",
            "asciinema-player-worker.min.js",
            "asciinema-player.css",
        )
    ],
    ("asciinema-player/LICENSE", "vendor/asciinema-player/LICENSE"),
]

# Never copied out of node_modules or web/src.
IGNORE = shutil.ignore_patterns("*.map", "*.ts", "*.d.ts", ".*", "__pycache__")

STATIC_REL = Path("tether/broker/static")
STRINGS_JS = "strings.js"
VOCABULARY_MODULE = "tether.protocol.vocabulary"
TEMPLATES_REL = Path("tether/broker/templates")


class CustomBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def _paths(self) -> tuple[Path, Path, Path, Path]:
        root = Path(self.root)
        return root / "web", root / "web/node_modules", root / STATIC_REL, root / TEMPLATES_REL

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        web, node_modules, static, templates = self._paths()

        if not node_modules.is_dir():
            # Building a wheel from our own sdist: the sdist already carries
            # the generated files (PKG-INFO marks an unpacked sdist).
            if (
                (root / "PKG-INFO").is_file()
                and (static / "vendor/xterm/xterm.mjs").is_file()
                and templates.is_dir()
            ):
                self.app.display_info("tether web: using prebuilt static files from the sdist")
                self._write_strings(static)
                self._add_artifacts(build_data)
                return
            raise RuntimeError(
                f"tether web console: {node_modules} is missing; {NPM_HINT} "
                "(cd web && npm ci), then build again."
            )

        missing = [src for src, _ in VENDOR_FILES if not (node_modules / src).exists()]
        if missing:
            raise RuntimeError(
                "tether web console: these files are missing from web/node_modules: "
                + ", ".join(missing)
                + f"; {NPM_HINT} (cd web && npm ci)."
            )
        for sub in ("templates", "src"):
            if not (web / sub).is_dir():
                raise RuntimeError(f"tether web console: {web / sub} is missing")

        # Start from empty targets so nothing stale is shipped.
        for target in (static, templates):
            if target.exists():
                shutil.rmtree(target)

        shutil.copytree(web / "templates", templates, ignore=IGNORE)
        shutil.copytree(web / "src", static, ignore=IGNORE)
        self._write_strings(static)
        for src, dest in VENDOR_FILES:
            source = node_modules / src
            destination = static / dest
            destination.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, destination, ignore=IGNORE)
            else:
                shutil.copy2(source, destination)

        count = sum(1 for p in static.rglob("*") if p.is_file())
        count += sum(1 for p in templates.rglob("*") if p.is_file())
        self.app.display_info(
            f"tether web: copied {count} files into {STATIC_REL} and {TEMPLATES_REL}"
        )
        self._add_artifacts(build_data)

    def _write_strings(self, static: Path) -> None:
        """Write static/strings.js from this tree's tether.protocol.vocabulary."""
        text = vocabulary_js(Path(self.root))
        static.mkdir(parents=True, exist_ok=True)
        (static / STRINGS_JS).write_text(text, encoding="utf-8", newline="\n")
        self.app.display_info(f"tether web: generated {STATIC_REL / STRINGS_JS}")

    def _add_artifacts(self, build_data: dict[str, Any]) -> None:
        # The wheel lists these in pyproject.toml; the sdist needs them too.
        artifacts = build_data.setdefault("artifacts", [])
        for pattern in (f"/{STATIC_REL.as_posix()}/**", f"/{TEMPLATES_REL.as_posix()}/**"):
            if pattern not in artifacts:
                artifacts.append(pattern)

    def clean(self, versions: list[str]) -> None:
        _, _, static, templates = self._paths()
        for target in (static, templates):
            if target.exists():
                shutil.rmtree(target)


def vocabulary_js(root: Path) -> str:
    """``strings_js()`` of the ``tether`` package under ``root`` (not an installed one).

    The project root goes first on sys.path for the import only; any ``tether``
    modules already loaded are set aside and restored afterwards, so the hook
    leaves the build process as it found it.
    """
    root = root.resolve()

    def ours(name: str) -> bool:
        return name == "tether" or name.startswith("tether.")

    saved_path = list(sys.path)
    saved_modules = {name: mod for name, mod in sys.modules.items() if ours(name)}
    for name in saved_modules:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        module = importlib.import_module(VOCABULARY_MODULE)
        origin = Path(module.__file__ or "").resolve()
        if not origin.is_relative_to(root):
            raise RuntimeError(f"tether web console: imported {VOCABULARY_MODULE} from {origin}, "
                               f"not from {root}")
        return str(module.strings_js())
    finally:
        sys.path[:] = saved_path
        for name in [name for name in sys.modules if ours(name)]:
            del sys.modules[name]
        sys.modules.update(saved_modules)
