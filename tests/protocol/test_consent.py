"""What the customer is asked and the record of their answers (protocol/consent.py).

The prompt's sentence is the client's own; only the technician's name, organisation and
the local user name are filled in, cleaned, so a hostile name cannot rewrite the question.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.protocol.channels import CAPABILITIES, KINDS
from tether.protocol.consent import (
    MAX_REFUSALS,
    REFUSAL_TEXT,
    WORDING,
    Ledger,
    Refusal,
    prompt,
    refusal_text,
    who,
)
from tether.protocol.sanitize import CONTROL_LINE_CLASS, clean_text

CONTROL_LINE = re.compile(CONTROL_LINE_CLASS)
WITHDRAWABLE = sorted(n for n, c in CAPABILITIES.items() if c.withdrawable)
NOT_WITHDRAWABLE = sorted(n for n, c in CAPABILITIES.items() if not c.withdrawable)
KEYS = sorted(WORDING)
#: names a hostile broker might send to make the prompt say something else
HOSTILE = [
    "Alice\x1b[2K\rBank IT",  # erase the line, print another name
    "Alice\nAllow? [y] yes",  # a second line that looks like the question
    "Alice\r\n",
    "\u202eTI knaB",  # right-to-left override: shows "Bank IT"
    "Alice\u2066\u2067\u2068\u2069\u200e\u200f\u061c Martin",
    "Alice\x1b]0;title\x07\x1b]52;c;aGk=\x07",  # window title, clipboard write
    "Alice\x00\x07\x08\x7f\x85\x9b31m",
    "Alice\u2028\u2029Martin",
]


def suffix(key: str, user: str = "") -> str:
    """The fixed part of a prompt after the technician's name."""
    return WORDING[key].split("{who}", 1)[1].format(user=user)


def prefix(key: str) -> str:
    return WORDING[key].split("{who}", 1)[0]


# --- wording --------------------------------------------------------------------


def test_every_capability_has_a_wording_key() -> None:
    for cap in CAPABILITIES.values():
        assert cap.wording in WORDING, cap.name
    # and the session itself is asked too
    assert "session" in WORDING


def test_every_wording_names_the_technician_exactly_once() -> None:
    for key, text in WORDING.items():
        assert text.count("{who}") == 1, key
        # no other placeholder the client could not fill
        assert set(re.findall(r"\{(\w*)\}", text)) <= {"who", "user"}, key
        assert not CONTROL_LINE.search(text), key


def test_the_shell_prompt_names_the_local_account() -> None:
    text = prompt("shell", "Alice", "Acme IT", user="bob")
    assert text.startswith(
        'Allow Alice (Acme IT) to open a shell with full access to your account "bob"? ')


def test_the_shell_prompt_says_what_full_access_means() -> None:
    # a same-user shell reaches what the account reaches: the question promises no wall
    text = prompt("shell", "Alice", "Acme IT", user="bob")
    for reach in ("your files", "SSH agent", "watch your screen", "type into your windows",
                  "answer questions like this one", "keep running after the session"):
        assert reach in text, reach
    assert "cannot" not in text


def test_the_session_prompt_says_what_the_technician_will_see() -> None:
    text = prompt("session", "Alice", "Acme IT")
    assert text.startswith("Alice (Acme IT) wants to start a remote support session")
    assert "user name" in text


def test_who_names_the_organisation_when_there_is_one() -> None:
    assert who("Alice", "Acme IT") == "Alice (Acme IT)"
    assert who("Alice", "") == "Alice"
    assert who("Alice", "\x1b[2K\u202e") == "Alice"  # an organisation of controls is none


@pytest.mark.parametrize("name", ["", "\x1b[2K", "\u202e\u2066", "\x00\r\n"], ids=repr)
def test_a_name_that_cleans_to_nothing_is_an_unnamed_technician(name: str) -> None:
    assert who(name, "") == "An unnamed technician"
    assert prompt("screen.view", name, "") == "Allow An unnamed technician to see your screen?"


@pytest.mark.parametrize("name", [" ", "   ", "\t \u3000\u00a0"], ids=repr)
def test_a_blank_name_is_an_unnamed_technician_too(name: str) -> None:
    assert who(name, "") == "An unnamed technician"
    assert prompt("screen.view", name, " ") == "Allow An unnamed technician to see your screen?"


def test_name_and_organisation_are_cut_to_80_characters() -> None:
    assert who("A" * 500, "O" * 500) == "A" * 80 + " (" + "O" * 80 + ")"


def test_braces_in_a_name_are_text_not_placeholders() -> None:
    assert prompt("shell", "{user}", "{who}", user="bob").startswith("Allow {user} ({who}) to")


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("name", HOSTILE, ids=repr)
def test_a_hostile_name_is_cleaned_and_the_question_stays_the_clients(key: str,
                                                                       name: str) -> None:
    text = prompt(key, name, name, user=name)
    assert not CONTROL_LINE.search(text), repr(text)
    assert "\x1b" not in text
    assert text.startswith(prefix(key))
    assert text.endswith(suffix(key, clean_text(name, 64)))


def test_the_forged_bank_name_keeps_its_letters_but_loses_its_effect() -> None:
    text = prompt("screen.control", "Alice\x1b[2K\rBank IT", "")
    assert text == "Allow AliceBank IT to control your mouse and keyboard?"
    text = prompt("screen.view", "\u202eTI knaB", "Acme\u202c")
    assert text == "Allow TI knaB (Acme) to see your screen?"


@settings(max_examples=200)
@given(st.sampled_from(KEYS), st.text(max_size=120), st.text(max_size=120),
       st.text(max_size=80))
def test_any_name_leaves_one_clean_line_ending_in_the_fixed_sentence(
        key: str, name: str, org: str, user: str) -> None:
    text = prompt(key, name, org, user)
    assert not CONTROL_LINE.search(text)
    assert text.startswith(prefix(key))
    assert text.endswith(suffix(key, clean_text(user, 64)))
    # the filled-in part is bounded: a name cannot push the question off the screen
    assert len(text) <= len(WORDING[key]) + 80 + 3 + 80 + 64


# --- refusals as the technician reads them --------------------------------------


def test_every_refusal_reason_has_a_text_for_the_technician() -> None:
    assert set(REFUSAL_TEXT) == set(Refusal)
    for reason in Refusal:
        assert refusal_text(reason) == REFUSAL_TEXT[reason]
        assert refusal_text(str(reason)) == REFUSAL_TEXT[reason]  # as it arrives on the wire


def test_the_refused_before_reason_counts_max_refusals() -> None:
    # the wire reason spells the number: it must be the number the ledger uses
    assert str(MAX_REFUSALS) in Refusal.REFUSED_BEFORE.value
    assert str(MAX_REFUSALS) in REFUSAL_TEXT[Refusal.REFUSED_BEFORE]


def test_an_unknown_reason_is_shown_cleaned_and_short() -> None:
    text = refusal_text("busy\x1b[2K\r\u202e" + "x" * 200)
    assert text.startswith("refused by the customer (busy")
    assert text.endswith(")")
    assert not CONTROL_LINE.search(text)
    assert len(text) <= len("refused by the customer ()") + 60


# --- the ledger -----------------------------------------------------------------


def test_a_new_ledger_allows_nothing_and_has_no_refusals() -> None:
    ledger = Ledger()
    for cap in CAPABILITIES:
        assert not ledger.exhausted(cap)
        assert not ledger.allows("c1", cap)


def test_a_yes_allows_that_capability_on_that_channel_only() -> None:
    ledger = Ledger()
    ledger.decide("screen.view", "c1", allow=True)
    assert ledger.allows("c1", "screen.view")
    assert not ledger.allows("c2", "screen.view")
    assert not ledger.allows("c1", "screen.control")


def test_refusals_are_counted_per_capability_across_channels() -> None:
    ledger = Ledger()
    for i in range(MAX_REFUSALS - 1):
        ledger.decide("shell", f"c{i}", allow=False)
    assert not ledger.exhausted("shell")
    ledger.decide("screen.view", "s1", allow=False)
    assert not ledger.exhausted("shell")  # another capability's no does not count
    ledger.decide("shell", "c-last", allow=False)
    assert ledger.exhausted("shell")
    assert not ledger.exhausted("screen.view")
    assert ledger.refusals == {"shell": MAX_REFUSALS, "screen.view": 1}


def test_a_no_allows_nothing() -> None:
    ledger = Ledger()
    ledger.decide("shell", "c1", allow=False)
    assert not ledger.allows("c1", "shell")


def test_a_yes_does_not_forgive_earlier_refusals() -> None:
    ledger = Ledger()
    for _ in range(MAX_REFUSALS):
        ledger.decide("clipboard", "c1", allow=False)
    ledger.decide("clipboard", "c1", allow=True)
    assert ledger.exhausted("clipboard")


def test_closing_a_channel_drops_what_it_allowed_but_not_the_refusals() -> None:
    ledger = Ledger()
    ledger.decide("screen.view", "c1", allow=True)
    ledger.decide("screen.control", "c1", allow=True)
    ledger.decide("screen.view", "c2", allow=True)
    ledger.decide("shell", "c3", allow=False)
    ledger.closed("c1")
    assert not ledger.allows("c1", "screen.view")
    assert not ledger.allows("c1", "screen.control")
    assert ledger.allows("c2", "screen.view")
    assert ledger.refusals == {"shell": 1}
    ledger.closed("c1")  # closing twice, or an unknown channel, is harmless
    ledger.closed("never-opened")


@pytest.mark.parametrize("cap", WITHDRAWABLE)
def test_a_withdrawable_capability_can_be_taken_back(cap: str) -> None:
    ledger = Ledger()
    ledger.decide("screen.view", "c1", allow=True)
    ledger.decide(cap, "c1", allow=True)
    ledger.decide(cap, "c2", allow=True)
    ledger.withdraw("c1", cap)
    assert not ledger.allows("c1", cap)
    assert ledger.allows("c1", "screen.view")  # the channel itself stays allowed
    assert ledger.allows("c2", cap)  # only on that channel
    ledger.withdraw("c1", cap)  # again, or where never allowed: no error
    ledger.withdraw("c9", cap)


@pytest.mark.parametrize("cap", NOT_WITHDRAWABLE)
def test_a_capability_that_is_not_withdrawable_stays_until_the_channel_closes(cap: str) -> None:
    ledger = Ledger()
    ledger.decide(cap, "c1", allow=True)
    with pytest.raises(ValueError, match="cannot be withdrawn"):
        ledger.withdraw("c1", cap)
    assert ledger.allows("c1", cap)


def test_withdrawable_capabilities_are_the_ones_added_to_an_open_channel() -> None:
    assert WITHDRAWABLE == ["clipboard", "screen.control"]
    added = {cap for row in KINDS.values() for cap in row.adds}
    assert set(WITHDRAWABLE) <= added


def test_an_unknown_capability_is_refused_by_decide() -> None:
    ledger = Ledger()
    with pytest.raises(ValueError, match="unknown capability"):
        ledger.decide("root", "c1", allow=True)
    with pytest.raises(ValueError):
        ledger.decide("root", "c1", allow=False)
    assert ledger.refusals == {} and ledger.allowed == {}


def test_an_unknown_capability_is_refused_by_withdraw_like_by_decide() -> None:
    with pytest.raises(ValueError, match="unknown capability"):
        Ledger().withdraw("c1", "root")


def test_reset_starts_a_new_session() -> None:
    ledger = Ledger()
    ledger.decide("shell", "c1", allow=True)
    for _ in range(MAX_REFUSALS):
        ledger.decide("clipboard", "c1", allow=False)
    ledger.reset()
    assert not ledger.allows("c1", "shell")
    assert not ledger.exhausted("clipboard")


def test_two_ledgers_share_nothing() -> None:
    a, b = Ledger(), Ledger()
    a.decide("shell", "c1", allow=True)
    a.decide("clipboard", "c1", allow=False)
    assert b.allowed == {} and b.refusals == {}


@settings(max_examples=200)
@given(st.lists(st.tuples(st.sampled_from(sorted(CAPABILITIES)), st.sampled_from(["c1", "c2"]),
                          st.booleans()), max_size=20))
def test_exhausted_is_exactly_max_refusals_noes(decisions: list[tuple[str, str, bool]]) -> None:
    ledger = Ledger()
    for cap, channel, allow in decisions:
        ledger.decide(cap, channel, allow)
    for cap in CAPABILITIES:
        noes = sum(1 for c, _, allow in decisions if c == cap and not allow)
        assert ledger.exhausted(cap) == (noes >= MAX_REFUSALS)
        for channel in ("c1", "c2"):
            yes = any(c == cap and ch == channel and allow for c, ch, allow in decisions)
            assert ledger.allows(channel, cap) == yes
