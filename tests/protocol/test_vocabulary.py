"""The vocabulary export: one source for the templates (``vocab``) and the page scripts."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from tether.protocol import channels, consent, states, terminal, vocabulary
from tether.protocol.errors import Close
from tether.protocol.sanitize import CONTROL_LINE_CLASS, clean_text

#: the code points compared between the JS class and Python's clean_text (all of them:
#: the class holds characters beyond U+FFFF, which need the RegExp's 'u' flag)
LAST_CODE_POINT = 0x10FFFF

_MODULE = re.compile(
    r"\A(?://[^\n]*\n)*"
    r"export const VOCAB = Object\.freeze\((?P<body>\{.*\})\);\n"
    r"export const CONTROL_CHARS = new RegExp\(VOCAB\.controlChars, 'gu'\);\n\Z",
    re.DOTALL,
)


def vocab_of(js: str) -> dict:
    """The VOCAB object of a strings.js text (its JSON body), checking the module shape."""
    match = _MODULE.match(js)
    assert match, "strings.js is not `export const VOCAB = Object.freeze({...}); ...`"
    return json.loads(match.group("body"))


def test_export_is_json():
    exported = vocabulary.export()
    assert json.loads(json.dumps(exported, allow_nan=False)) == exported


def test_every_state_has_a_label():
    exported = vocabulary.export()
    for enum, labels in ((states.SessionState, "sessionLabels"),
                         (states.ChannelState, "channelLabels"),
                         (states.Consent, "consentLabels")):
        for member in enum:
            assert exported[labels].get(member.value), f"{enum.__name__}.{member.name}: no label"


def test_state_names_are_the_enums():
    names = vocabulary.export()["states"]
    assert names["session"] == {m.name: m.value for m in states.SessionState}
    assert names["channel"] == {m.name: m.value for m in states.ChannelState}
    assert names["consent"] == {m.name: m.value for m in states.Consent}


def test_tables_come_from_protocol():
    exported = vocabulary.export()
    assert exported["close"] == {c.name: c.value for c in Close}
    assert exported["maxRefusals"] == consent.MAX_REFUSALS
    assert set(exported["channelFinal"]) == set(states.CHANNEL_FINAL)
    assert set(exported["channelAttachable"]) == set(states.CHANNEL_ATTACHABLE)
    assert exported["terminal"]["minSize"] == terminal.MIN_SIZE
    assert exported["terminal"]["maxSize"] == terminal.MAX_SIZE
    assert exported["terminal"]["controls"] == {
        "ACK": "ack", "CLOSED": "closed", "ECHO": "echo", "EXIT": "exit", "RESIZE": "resize"}
    assert exported["controlChars"] == CONTROL_LINE_CLASS
    available = {k.name for k in channels.KINDS.values() if k.available}
    assert set(exported["kinds"]) == available
    for name, row in exported["kinds"].items():
        assert exported["capabilities"][row["opens"]]["opens"] == name


def test_interface_contract_labels():
    """DESIGN.md's console contract: the buttons and the word "refused"."""
    exported = vocabulary.export()
    caps = exported["capabilities"]
    assert caps["shell"]["label"] == "Open shell"
    assert caps["screen.view"]["label"] == "View screen"
    assert caps["screen.control"]["label"] == "Request control"
    assert exported["kinds"]["terminal"]["label"] == "Open shell"
    assert caps["shell"]["opens"] == "terminal"
    for labels in (exported["consentLabels"], exported["channelLabels"]):
        assert "refused" in labels["refused"] and "refused" in labels["timeout"]


def test_control_char_list_is_the_class():
    """The templates' list holds exactly the characters the regex class matches."""
    listed = vocabulary.export()["controlCharList"]
    pattern = re.compile(CONTROL_LINE_CLASS)
    matched = [chr(c) for c in range(sys.maxunicode + 1)
               if not 0xD800 <= c <= 0xDFFF and pattern.fullmatch(chr(c))]
    assert sorted(listed) == matched
    assert len(set(listed)) == len(listed)


def test_strings_js_shape():
    js = vocabulary.strings_js()
    assert js.isascii()
    assert vocab_of(js) == vocabulary.export()


def removed_by_python() -> list[int]:
    return [c for c in range(LAST_CODE_POINT + 1) if clean_text(chr(c)) == ""]


NODE_PROBE = """
import { CONTROL_CHARS, VOCAB } from './strings.js';
const removed = [];
for (let c = 0; c <= LAST; c += 1) {
  if (String.fromCodePoint(c).replace(CONTROL_CHARS, '') === '') removed.push(c);
}
// A global regex is stateful in test(); replace() must not be: run it twice.
const again = [];
for (let c = 0; c <= LAST; c += 1) {
  if (String.fromCodePoint(c).replace(CONTROL_CHARS, '') === '') again.push(c);
}
process.stdout.write(JSON.stringify({ removed, again, frozen: Object.isFrozen(VOCAB) }));
"""


def run_node(tmp_path, files: dict[str, str], script: str) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    (tmp_path / "package.json").write_text('{"type": "module"}\n')
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "probe.js").write_text(script.replace("LAST", str(LAST_CODE_POINT)))
    done = subprocess.run([node, "probe.js"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_js_class_removes_what_clean_text_removes(tmp_path):
    """CONTROL_CHARS in strings.js matches exactly the code points clean_text drops."""
    out = run_node(tmp_path, {"strings.js": vocabulary.strings_js()}, NODE_PROBE)
    expected = removed_by_python()
    assert out["removed"] == expected
    assert out["again"] == expected
    assert out["frozen"]
    # the drift this replaced: U+2028/2029 were kept by the old JS copy
    assert 0x2028 in expected and 0x2029 in expected
    # invisible characters, in the BMP and beyond it (tags), go in both
    assert 0x200B in expected and 0xE0041 in expected and 0x200D not in expected
