"""The customer's decisions, kept in the protocol's Ledger (client/decisions.py)."""

from __future__ import annotations

import asyncio

import pytest

from tether.client import decisions as d
from tether.client.consent import Answer
from tether.protocol import messages as m
from tether.protocol.consent import MAX_REFUSALS, Refusal, prompt

SHELL_Q = prompt("shell", "Alice Martin", "Acme IT", "bob")


class Asker:
    """A customer who gives the scripted answers, in order."""

    def __init__(self, *answers: bool) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    async def ask(self, question: str) -> Answer:
        self.questions.append(question)
        await asyncio.sleep(0)
        allow = self.answers.pop(0)
        return Answer(allow, "yes" if allow else Refusal.NO)


def request(channel: str = "c1", kind: str = "terminal") -> m.ChannelRequest:
    return m.ChannelRequest(channel=channel, kind=kind, technician="Alice Martin", org="Acme IT")


def decisions(asker: Asker, said: list[str] | None = None, *, allow_root: bool = True,
              session: bool = True) -> d.Decisions:
    out = d.Decisions(asker, (said if said is not None else []).append, user="bob",
                      allow_root=allow_root, kinds={"terminal"})
    out.session_allowed = session
    return out


async def test_the_session_question_is_the_clients_own_wording() -> None:
    asker = Asker(True)
    dec = decisions(asker, session=False)
    claimed = m.Claimed(session="s", technician="Alice\x1b[2J Martin", org="Acme IT")
    assert (await dec.session(claimed)).allow
    assert dec.session_allowed
    assert asker.questions == [
        "Alice Martin (Acme IT) wants to start a remote support session with this computer. "
        "Allow? (They will see this computer's name, system and your user name.)"]


async def test_a_yes_is_kept_in_the_ledger_for_that_channel_only() -> None:
    dec = decisions(Asker(True))
    assert await dec.channel(request("c1")) == Answer(True, "yes")
    assert dec.ledger.allows("c1", "shell")
    assert dec.allowed_kind("c1") == "terminal"
    assert dec.allowed_kind("c2") is None
    dec.closed("c1")
    assert dec.allowed_kind("c1") is None


async def test_the_shell_question_is_worded_from_the_capability_table() -> None:
    asker = Asker(False)
    await decisions(asker).channel(request())
    assert asker.questions == [SHELL_Q]


@pytest.mark.parametrize("kind", ["screen", "shell", "bogus", ""])
async def test_unknown_unavailable_or_unrunnable_kinds_are_refused_unasked(kind: str) -> None:
    asker = Asker()
    dec = decisions(asker)
    assert await dec.channel(request(kind=kind)) == Answer(False, Refusal.UNSUPPORTED)
    assert asker.questions == []
    assert dec.ledger.refusals == {}


async def test_a_kind_the_client_cannot_run_is_refused_even_if_the_table_has_it() -> None:
    asker = Asker()
    dec = d.Decisions(asker, [].append, user="bob", allow_root=True, kinds=set())
    dec.session_allowed = True
    assert (await dec.channel(request())).reason == Refusal.UNSUPPORTED


async def test_no_session_no_question() -> None:
    asker = Asker()
    assert await decisions(asker, session=False).channel(request()) == Answer(False, "no session")
    assert asker.questions == []


async def test_after_three_refusals_it_refuses_without_asking() -> None:
    said: list[str] = []
    asker = Asker(*[False] * MAX_REFUSALS)
    dec = decisions(asker, said)
    for i in range(MAX_REFUSALS):
        assert await dec.channel(request(f"c{i}")) == Answer(False, "no")
    answer = await dec.channel(request("c9"))
    assert answer == Answer(False, "refused 3 times")
    assert answer.reason is Refusal.REFUSED_BEFORE
    assert len(asker.questions) == MAX_REFUSALS
    assert "Refused without asking" in said[-1] and SHELL_Q in said[-1]


async def test_a_request_queued_behind_the_third_no_is_not_asked() -> None:
    asker = Asker(*[False] * MAX_REFUSALS)
    dec = decisions(asker)
    answers = await asyncio.gather(*(dec.channel(request(f"c{i}")) for i in range(4)))
    assert [a.reason for a in answers] == ["no", "no", "no", "refused 3 times"]
    assert len(asker.questions) == MAX_REFUSALS


async def test_a_yes_does_not_count_as_a_refusal() -> None:
    asker = Asker(False, True, False, True, True)
    dec = decisions(asker)
    results = [(await dec.channel(request(f"c{i}"))).allow for i in range(5)]
    assert results == [False, True, False, True, True]
    assert dec.ledger.refusals == {"shell": 2}


async def test_a_new_session_starts_with_nothing_allowed_and_no_refusals() -> None:
    dec = decisions(Asker(True, *[False] * MAX_REFUSALS))
    for i in range(MAX_REFUSALS + 1):
        await dec.channel(request(f"c{i}"))
    assert dec.ledger.exhausted("shell")
    dec.new_session()
    assert not dec.session_allowed
    assert not dec.ledger.exhausted("shell") and dec.allowed_kind("c0") is None


async def test_a_root_shell_is_refused_without_allow_root(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(d.os, "geteuid", lambda: 0)
    said: list[str] = []
    asker = Asker()
    answer = await decisions(asker, said, allow_root=False).channel(request())
    assert answer == Answer(False, "root shell not allowed")
    assert asker.questions == [] and "--allow-root" in said[-1]
    # with --allow-root the customer is asked as usual
    asker = Asker(True)
    assert (await decisions(asker, allow_root=True).channel(request())).allow
    assert asker.questions == [SHELL_Q]


async def test_a_yes_after_the_session_ended_allows_nothing() -> None:
    dec = decisions(Asker(True))

    class Slow(Asker):
        async def ask(self, question: str) -> Answer:
            dec.end()  # the technician ended the session while the customer read
            return Answer(True, "yes")

    dec.asker = Slow()
    assert await dec.channel(request()) == Answer(False, "no session")
    assert dec.allowed_kind("c1") is None


async def test_end_and_close_all_keep_the_refusal_count() -> None:
    dec = decisions(Asker(True, False))
    await dec.channel(request("c1"))
    await dec.channel(request("c2"))
    dec.close_all()
    assert dec.allowed_kind("c1") is None and dec.ledger.refusals == {"shell": 1}
