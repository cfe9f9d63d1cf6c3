"""Consent prompts (client/consent.py), answered through a real pseudo-terminal.

The refusal limit and the wording's source are the caller's: see test_decisions.py.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
from collections.abc import Iterator

import pytest

from tests.helpers import T
from tether.client.consent import Answer, Prompter
from tether.protocol.consent import Refusal, prompt, who

QUESTION = prompt("shell", "Alice Martin", "Acme IT", "bob")


class Customer:
    """A person at a terminal: answers each prompt once it has been printed."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.answers: list[str] = []
        self.said: list[str] = []

    def say(self, text: str) -> None:
        self.said.append(text)
        if "[y/N]" in text:
            answer = self.answers.pop(0) if self.answers else None
            if answer is not None:
                os.write(self.master, answer.encode())

    def type_ahead(self, text: str, slave: int) -> None:
        """Keystrokes typed before any prompt (or a terminal's answerback)."""
        os.write(self.master, text.encode())
        # wait until the line has reached the terminal's input queue
        assert select.select([slave], [], [], T)[0]

    @property
    def prompts(self) -> list[str]:
        return [s for s in self.said if "[y/N]" in s]

    @property
    def text(self) -> str:
        return "".join(self.said)


@pytest.fixture
def tty(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, int]]:
    master, slave = os.openpty()
    stdin = open(slave, closefd=False)  # noqa: SIM115 - closed below
    monkeypatch.setattr(sys, "stdin", stdin)
    try:
        yield master, slave
    finally:
        stdin.close()
        os.close(slave)
        os.close(master)


@pytest.fixture
def customer(tty: tuple[int, int]) -> Customer:
    return Customer(tty[0])


@pytest.fixture
def no_tty(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    with open(os.devnull) as devnull:
        monkeypatch.setattr(sys, "stdin", devnull)
        yield


# --- no terminal ----------------------------------------------------------------------


async def test_without_a_terminal_every_request_is_refused_and_says_so(no_tty: None) -> None:
    said: list[str] = []
    p = Prompter(T, said.append)
    assert not p.interactive
    answer = await p.ask(QUESTION)
    assert answer == Answer(False, "no terminal")
    text = "".join(said)
    assert "No terminal" in text and "refused" in text
    assert QUESTION in text  # the customer can still see what was asked
    assert "[y/N]" not in text


# --- a terminal ---------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["y\n", "Y\n", "yes\n", "YES\n", "  y  \n", "y\r\n"])
async def test_yes_allows(customer: Customer, typed: str) -> None:
    p = Prompter(T, customer.say)
    assert p.interactive
    customer.answers.append(typed)
    assert await p.ask(QUESTION) == Answer(True, "yes")
    assert customer.prompts == [f"\r\n{QUESTION} [y/N] "]
    assert "Allowed." in customer.text


@pytest.mark.parametrize("typed", ["n\n", "\n", "no\n", "yeah\n", "ja\n", "y y\n", "ok\n",
                                   "x" * 100 + "\n"])
async def test_anything_else_refuses(customer: Customer, typed: str) -> None:
    p = Prompter(T, customer.say)
    customer.answers.append(typed)
    assert await p.ask(QUESTION) == Answer(False, "no")
    assert "Refused." in customer.text


async def test_end_of_input_refuses(customer: Customer, tty: tuple[int, int]) -> None:
    p = Prompter(T, customer.say)
    customer.answers.append("\x04")  # Ctrl-D at the prompt
    assert (await p.ask(QUESTION)).allow is False


async def test_no_answer_in_time_refuses(customer: Customer) -> None:
    p = Prompter(0.05, customer.say)
    assert await p.ask(QUESTION) == Answer(False, "timeout")
    assert "No answer: refused." in customer.text


async def test_keys_typed_before_the_prompt_cannot_answer_it(
    customer: Customer, tty: tuple[int, int]
) -> None:
    p = Prompter(T, customer.say)
    customer.type_ahead("y\n", tty[1])  # e.g. typed into the shell a moment earlier
    customer.answers.append("n\n")
    assert await p.ask(QUESTION) == Answer(False, "no")


async def test_the_reasons_are_the_protocols_refusals(customer: Customer) -> None:
    p = Prompter(T, customer.say)
    customer.answers.append("n\n")
    answer = await p.ask(QUESTION)
    assert answer.reason is Refusal.NO and answer.reason == "no"  # same string on the wire


async def test_one_prompt_at_a_time(customer: Customer) -> None:
    p = Prompter(T, customer.say)
    customer.answers += ["y\n", "n\n"]
    first, second = await asyncio.gather(p.ask("First?"), p.ask("Second?"))
    assert (first.allow, second.allow) == (True, False)
    # the second question appears only after the first was answered
    assert [s.strip() for s in customer.said] == [
        "First? [y/N]", "Allowed.", "Second? [y/N]", "Refused."]


# --- wording and names ------------------------------------------------------------------


def test_the_shell_question_has_the_designed_wording() -> None:
    assert QUESTION.startswith('Allow Alice Martin (Acme IT) to open a shell with full access '
                               'to your account "bob"? Full access means anything you can do')


def test_who_names_the_technician_and_organisation() -> None:
    assert who("Alice Martin", "Acme IT") == "Alice Martin (Acme IT)"
    assert who("Alice Martin", "") == "Alice Martin"
    assert who("", "Acme IT") == "An unnamed technician (Acme IT)"


@pytest.mark.parametrize("name, org", [
    ("Alice\x1b[2K\rBank IT", "Acme\x07 IT"),
    ("Alice\u202e", "\u202eAcme IT\u202c"),
    ("\u2066Alice\u2069\u200f", "Acme\u061c IT\x7f"),
    ("Alice\x9b6n", "Acme\x00 IT\n"),
    ("Alice\x1b]0;Your bank\x07", "Acme\x1bP1$r\x1b\\ IT"),
])
def test_who_strips_control_and_bidi_characters(name: str, org: str) -> None:
    shown = who(name, org)
    for ch in shown:
        assert ch.isprintable(), repr(shown)
        assert ch not in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    assert shown.startswith("Alice")
    assert "Acme" in shown and shown.endswith(" IT)")


def test_who_of_nothing_but_controls_is_unnamed() -> None:
    assert who("\x1b[2J\u202e\x00", "\x07") == "An unnamed technician"


def test_who_limits_length() -> None:
    assert len(who("A" * 1000, "B" * 1000)) <= 80 + 80 + 3


async def test_a_withdrawn_question_says_so_and_allows_nothing(customer: Customer) -> None:
    p = Prompter(T, customer.say)
    asking = asyncio.ensure_future(p.ask(QUESTION))
    for _ in range(100):
        if customer.prompts:
            break
        await asyncio.sleep(0.01)
    asking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asking
    assert "Question withdrawn" in customer.said[-1]
    customer.answers.append("n\n")
    assert await p.ask(QUESTION) == Answer(False, "no")  # the next question is asked
