"""Session and channel state machines (protocol/states.py).

The tables are checked by what they guarantee, not by copying them: no relay opens
without the customer's yes, a final state stays final, every live channel can be
closed, and every state the console can show has a label.
"""

from __future__ import annotations

from itertools import product

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.protocol.errors import Close, Conflict
from tether.protocol.states import (
    CHANNEL_ATTACHABLE,
    CHANNEL_FINAL,
    CHANNEL_LABELS,
    CHANNEL_TRANSITIONS,
    CONSENT_LABELS,
    SESSION_CONSENT,
    SESSION_LABELS,
    SESSION_TRANSITIONS,
    ChannelEvent,
    ChannelState,
    Consent,
    SessionEvent,
    SessionState,
    next_channel,
    next_session,
)

S, SE, C, CE = SessionState, SessionEvent, ChannelState, ChannelEvent


def run_session(events: list[SessionEvent]) -> list[SessionState]:
    """The states a session goes through; a refused event leaves the state as it was."""
    state, seen = S.CLAIMED, [S.CLAIMED]
    for event in events:
        try:
            state = next_session(state, event)
        except Conflict:
            pass
        seen.append(state)
    return seen


def run_channel(events: list[ChannelEvent]) -> list[ChannelState]:
    state, seen = C.REQUESTED, [C.REQUESTED]
    for event in events:
        try:
            state = next_channel(state, event)
        except Conflict:
            pass
        seen.append(state)
    return seen


# --- the session ----------------------------------------------------------------


def test_a_session_is_claimed_then_active_on_a_yes_then_ended() -> None:
    assert next_session(S.CLAIMED, SE.ALLOW) is S.ACTIVE
    assert next_session(S.ACTIVE, SE.END) is S.ENDED


@pytest.mark.parametrize("event", [SE.REFUSE, SE.TIMEOUT, SE.END])
def test_a_claimed_session_ends_on_a_no_a_timeout_or_an_end(event: SessionEvent) -> None:
    assert next_session(S.CLAIMED, event) is S.ENDED


@pytest.mark.parametrize("event", [SE.ALLOW, SE.REFUSE, SE.TIMEOUT])
def test_an_active_session_cannot_be_answered_again(event: SessionEvent) -> None:
    # a late "no" or a second "yes" must not move a session the customer already allowed
    with pytest.raises(Conflict) as err:
        next_session(S.ACTIVE, event)
    assert err.value.message == "session is active"
    assert err.value.close_code == Close.CONFLICT and err.value.http_status == 409


@pytest.mark.parametrize("event", list(SE))
def test_an_ended_session_stays_ended(event: SessionEvent) -> None:
    with pytest.raises(Conflict, match="session is ended"):
        next_session(S.ENDED, event)


def test_every_session_transition_in_the_table_is_what_next_session_does() -> None:
    for state, event in product(S, SE):
        want = SESSION_TRANSITIONS.get((state, event))
        if want is None:
            with pytest.raises(Conflict):
                next_session(state, event)
        else:
            assert next_session(state, event) is want


def test_the_sessions_consent_follows_the_customers_answer() -> None:
    assert SESSION_CONSENT == {SE.ALLOW: Consent.ALLOWED, SE.REFUSE: Consent.REFUSED,
                               SE.TIMEOUT: Consent.TIMEOUT}
    # ending is not an answer: a session ended while waiting stays "pending"
    assert SE.END not in SESSION_CONSENT


@settings(max_examples=200)
@given(st.lists(st.sampled_from(list(SE)), max_size=12))
def test_a_session_is_active_only_after_a_yes_and_ends_once(events: list[SessionEvent]) -> None:
    seen = run_session(events)
    for i, state in enumerate(seen):
        if state is S.ACTIVE:
            assert SE.ALLOW in events[:i]
        if state is S.ENDED:
            assert set(seen[i:]) == {S.ENDED}


# --- channels -------------------------------------------------------------------


def test_a_channel_goes_requested_pairing_open_detached_open_closed() -> None:
    state = C.REQUESTED
    path = []
    for event in (CE.ALLOW, CE.PAIRED, CE.DETACH, CE.PAIRED, CE.CLOSE):
        state = next_channel(state, event)
        path.append(state)
    assert path == [C.PAIRING, C.OPEN, C.DETACHED, C.OPEN, C.CLOSED]


def test_a_no_or_no_answer_ends_a_requested_channel() -> None:
    assert next_channel(C.REQUESTED, CE.REFUSE) is C.REFUSED
    assert next_channel(C.REQUESTED, CE.TIMEOUT) is C.TIMEOUT


def test_a_channel_cannot_pair_before_the_customer_says_yes() -> None:
    # both ends presenting their secrets is not consent
    with pytest.raises(Conflict, match="channel is requested"):
        next_channel(C.REQUESTED, CE.PAIRED)


def test_a_second_viewer_cannot_pair_with_an_open_channel() -> None:
    with pytest.raises(Conflict, match="channel is open"):
        next_channel(C.OPEN, CE.PAIRED)


@pytest.mark.parametrize("event", [CE.ALLOW, CE.REFUSE, CE.TIMEOUT])
@pytest.mark.parametrize("state", [C.PAIRING, C.OPEN, C.DETACHED])
def test_an_answered_channel_cannot_be_answered_again(state: ChannelState,
                                                      event: ChannelEvent) -> None:
    with pytest.raises(Conflict) as err:
        next_channel(state, event)
    assert err.value.message == f"channel is {state}"


@pytest.mark.parametrize("state", sorted(CHANNEL_FINAL))
def test_a_final_channel_state_accepts_no_event(state: ChannelState) -> None:
    for event in CE:
        with pytest.raises(Conflict):
            next_channel(state, event)


@pytest.mark.parametrize("state", sorted(set(C) - CHANNEL_FINAL))
def test_every_live_channel_can_be_closed(state: ChannelState) -> None:
    # nothing gets stuck: the broker can always end a channel it no longer wants
    assert next_channel(state, CE.CLOSE) is C.CLOSED


def test_final_states_are_exactly_those_with_no_way_out() -> None:
    with_exit = {state for state, _ in CHANNEL_TRANSITIONS}
    assert CHANNEL_FINAL == set(C) - with_exit
    assert CHANNEL_FINAL == {C.REFUSED, C.TIMEOUT, C.CLOSED}


def test_attachable_states_are_those_waiting_for_an_end_to_pair() -> None:
    assert CHANNEL_ATTACHABLE == {state for state in C
                                  if CHANNEL_TRANSITIONS.get((state, CE.PAIRED)) is C.OPEN}
    assert not CHANNEL_ATTACHABLE & CHANNEL_FINAL


def test_every_channel_state_is_reachable_from_requested() -> None:
    reached, frontier = {C.REQUESTED}, [C.REQUESTED]
    while frontier:
        state = frontier.pop()
        for event in CE:
            new = CHANNEL_TRANSITIONS.get((state, event))
            if new is not None and new not in reached:
                reached.add(new)
                frontier.append(new)
    assert reached == set(C)


def test_every_channel_transition_in_the_table_is_what_next_channel_does() -> None:
    for state, event in product(C, CE):
        want = CHANNEL_TRANSITIONS.get((state, event))
        if want is None:
            with pytest.raises(Conflict):
                next_channel(state, event)
        else:
            assert next_channel(state, event) is want


@settings(max_examples=200)
@given(st.lists(st.sampled_from(list(CE)), max_size=16))
def test_no_channel_is_ever_open_without_a_yes(events: list[ChannelEvent]) -> None:
    seen = run_channel(events)
    for i, state in enumerate(seen):
        if state in (C.PAIRING, C.OPEN, C.DETACHED):
            assert CE.ALLOW in events[:i]
        if state in CHANNEL_FINAL:
            assert set(seen[i:]) == {state}


# --- wire values and labels -----------------------------------------------------


@pytest.mark.parametrize("enum", [S, SE, Consent, C, CE])
def test_wire_values_are_distinct_lowercase_words(enum: type) -> None:
    values = [member.value for member in enum]
    assert len(set(values)) == len(values)
    for member in enum:
        assert member.value == member.value.lower() == member.name.lower()
        assert str(member) == member.value  # what goes into JSON and the audit log


def test_every_state_the_console_shows_has_a_label() -> None:
    assert set(S) <= set(SESSION_LABELS)
    # "waiting" is the console's row for a code not yet redeemed: not a session state
    assert set(SESSION_LABELS) - set(S) == {"waiting"}
    assert set(CHANNEL_LABELS) == set(C)
    assert set(CONSENT_LABELS) == set(Consent)
    for labels in (SESSION_LABELS, CHANNEL_LABELS, CONSENT_LABELS):
        assert all(isinstance(text, str) and text.strip() for text in labels.values())


def test_a_timeout_reads_the_same_for_the_session_and_for_a_channel() -> None:
    assert CONSENT_LABELS[Consent.TIMEOUT] == CHANNEL_LABELS[C.TIMEOUT] == "refused (no answer)"
    assert CONSENT_LABELS[Consent.REFUSED] == CHANNEL_LABELS[C.REFUSED] == "refused"


def test_labels_are_found_by_the_plain_string_too() -> None:
    # templates and JSON hand the state back as a plain str
    assert CHANNEL_LABELS["open"] == "open"
    assert SESSION_LABELS["claimed"] == "Awaiting consent"
    assert CONSENT_LABELS["pending"] == "waiting for the customer"
