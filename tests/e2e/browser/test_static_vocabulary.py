"""The built console carries the generated vocabulary, and the sources hold no copies of it.

``hatch_build.py`` writes ``static/strings.js`` from ``tether.protocol.vocabulary``;
the page modules import it. These checks need a built package (``pip install .``)
and node, not Chromium.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
from pathlib import Path

import pytest

import tether
from tests.protocol.test_vocabulary import LAST_CODE_POINT, run_node, vocab_of
from tether.protocol import vocabulary
from tether.protocol.sanitize import clean_text

ROOT = Path(__file__).resolve().parents[3]
WEB = ROOT / "web"
STRINGS = "tether/broker/static/strings.js"


def built_file(rel: str) -> Path:
    """A file of the installed wheel (else of the package the tests import)."""
    try:
        dist = importlib.metadata.distribution("tether")
    except importlib.metadata.PackageNotFoundError:
        dist = None
    for entry in (dist.files or []) if dist else []:
        if entry.as_posix() == rel:
            return Path(str(dist.locate_file(entry)))
    fallback = Path(tether.__file__).parent.parent / rel
    if not fallback.is_file():
        pytest.fail(f"no {rel} in the built package: run `pip install .`")
    return fallback


def test_built_strings_js_is_the_export():
    js = built_file(STRINGS).read_text(encoding="utf-8")
    assert vocab_of(js) == vocabulary.export()
    assert js == vocabulary.strings_js()


CLEAN_PROBE = """
import { cleanText } from './common.js';
const changed = [];
for (let c = 0; c <= LAST; c += 1) {
  const ch = String.fromCodePoint(c);
  const out = cleanText(`a${ch}b`);
  if (out === 'a\\ufffdb' && c !== 0xfffd) changed.push(c);
  else if (out !== `a${ch}b`) throw new Error(`cleanText(U+${c.toString(16)}) gave ${out}`);
}
process.stdout.write(JSON.stringify({ changed }));
"""


def test_built_clean_text_matches_python(tmp_path):
    """The page code's cleanText() marks exactly the characters clean_text removes."""
    files = {name: built_file(f"tether/broker/static/{name}").read_text(encoding="utf-8")
             for name in ("strings.js", "common.js")}
    out = run_node(tmp_path, files, CLEAN_PROBE)
    assert out["changed"] == [c for c in range(LAST_CODE_POINT + 1) if clean_text(chr(c)) == ""]


def sources() -> list[Path]:
    found = sorted([*WEB.glob("src/**/*.js"), *WEB.glob("templates/**/*.html")])
    assert found, f"no web sources under {WEB}"
    return found


def test_no_copies_of_the_vocabulary_in_web_sources():
    exported = vocabulary.export()
    labels = {text for table in ("sessionLabels", "consentLabels", "channelLabels")
              for text in exported[table].values()}
    labels |= {row["label"] for row in exported["capabilities"].values() if row["label"]}
    # Quoted label literals, e.g. 'Awaiting consent' or "refused (no answer)"; one-word
    # labels ("open", "Active") are ordinary words elsewhere too, so only the longer ones.
    labels = {text for text in labels if " " in text}
    quoted = re.compile("|".join(f"(['\"`]){re.escape(text)}\\{n + 1}"
                                 for n, text in enumerate(sorted(labels))))
    codes = {str(code) for name, code in exported["close"].items() if name != "NORMAL"}
    code_literal = re.compile(r"(?<![\w.])(" + "|".join(sorted(codes)) + r")(?![\w.])")
    problems = []
    for path in sources():
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(ROOT)
        for n, line in enumerate(text.splitlines(), 1):
            if line.lstrip().startswith(("//", "*", "/*")):
                continue
            if quoted.search(line):
                problems.append(f"{rel}:{n}: label literal: {line.strip()}")
            if path.suffix == ".js" and code_literal.search(line):
                problems.append(f"{rel}:{n}: close-code literal: {line.strip()}")
            if "\\u2066" in line or "\\u202e" in line or "\\u061c" in line:
                problems.append(f"{rel}:{n}: own control-character list: {line.strip()}")
    assert not problems, "copies of tether.protocol's vocabulary:\n" + "\n".join(problems)


def test_page_modules_import_strings_js():
    for name in ("common.js", "session.js", "dashboard.js"):
        text = (WEB / "src" / name).read_text(encoding="utf-8")
        assert re.search(r"from '\./strings\.js';", text), f"{name} does not import ./strings.js"
    assert not (WEB / "src" / "strings.js").exists(), "strings.js is generated, not a source"


def test_strings_js_json_matches_what_node_sees(tmp_path):
    """Node evaluates the module to the same object the JSON body holds."""
    probe = ("import { VOCAB } from './strings.js';\n"
             "process.stdout.write(JSON.stringify(VOCAB));\n")
    out = run_node(tmp_path, {"strings.js": vocabulary.strings_js()}, probe)
    assert out == json.loads(json.dumps(vocabulary.export()))
