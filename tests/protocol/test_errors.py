"""The error tree and its close codes (protocol/errors.py).

A close frame is decoded back to the error that sent it through one table: every code
Tether sends stands for the class whose ``close_code`` it is, and a normal close is no
error at all.
"""

from __future__ import annotations

import pytest

from tether.protocol import errors
from tether.protocol.errors import (
    AuditUnavailable,
    AuthError,
    BadCode,
    Busy,
    Close,
    Conflict,
    Forbidden,
    InternalError,
    MessageTooBig,
    NotFound,
    ProtocolError,
    RateLimited,
    TetherError,
    Timeout,
    TLSError,
    UnknownMessage,
    from_close,
)


def subclasses(cls: type[TetherError]) -> list[type[TetherError]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *subclasses(sub)]
    return out


ERRORS = [TetherError, *subclasses(TetherError)]
ERROR_CODES = [c for c in Close if c is not Close.NORMAL]


def make(cls: type[TetherError], message: str | None = None) -> TetherError:
    if cls in (RateLimited, Busy):
        return cls(60.0, message)  # type: ignore[call-arg]
    return cls(message)


def test_the_tree_is_what_the_docstring_draws() -> None:
    names = {cls.__name__ for cls in ERRORS}
    for name in names:
        assert name in (errors.__doc__ or ""), name
    assert set(subclasses(ProtocolError)) == {MessageTooBig, UnknownMessage}
    assert subclasses(AuthError) == [BadCode]


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_every_error_closes_with_a_close_member(cls: type[TetherError]) -> None:
    assert cls.close_code in list(Close)
    assert isinstance(cls.close_code, Close)
    assert make(cls).close_code is Close(cls.close_code)


@pytest.mark.parametrize("cls", ERRORS, ids=lambda c: c.__name__)
def test_every_error_has_a_message_and_an_http_status(cls: type[TetherError]) -> None:
    err = make(cls)
    assert err.message and str(err) == err.message
    assert 400 <= cls.http_status <= 599
    assert make(cls, "custom").message == "custom"


def test_close_codes_are_distinct_and_sendable() -> None:
    values = [int(c) for c in Close]
    assert len(set(values)) == len(values) == len(Close.__members__)  # no aliases
    for code in Close:
        # RFC 6455 7.4: codes an endpoint may put in a close frame
        assert code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) \
            or 3000 <= code <= 4999, code
    # application codes mirror the HTTP status they stand for
    for code in Close:
        if code >= 4000:
            assert any(cls.http_status == code - 4000 for cls in ERRORS), code


@pytest.mark.parametrize("code", ERROR_CODES, ids=lambda c: c.name)
def test_from_close_gives_the_class_whose_close_code_it_is(code: Close) -> None:
    err = from_close(int(code))
    assert err is not None
    assert type(err).close_code == code
    assert type(err) in ERRORS


def test_from_close_table() -> None:
    want = {
        Close.POLICY: ProtocolError, Close.TOO_BIG: MessageTooBig, Close.INTERNAL: InternalError,
        Close.AUTH: AuthError, Close.FORBIDDEN: Forbidden, Close.NOT_FOUND: NotFound,
        Close.TIMEOUT: Timeout, Close.CONFLICT: Conflict, Close.RATE_LIMITED: RateLimited,
        Close.BUSY: Busy,
    }
    assert set(want) == set(ERROR_CODES)
    for code, cls in want.items():
        assert type(from_close(code)) is cls, code


@pytest.mark.parametrize("cls", [c for c in ERRORS if c is not TetherError],
                         ids=lambda c: c.__name__)
def test_an_error_sent_as_a_close_frame_comes_back_with_its_code(cls: type[TetherError]) -> None:
    sent = make(cls, "why")
    got = from_close(sent.close_code, sent.message)
    assert got is not None
    assert got.close_code == sent.close_code
    assert got.message == "why"


@pytest.mark.parametrize("code", [None, 1000, 1001, Close.NORMAL])
def test_a_normal_close_is_no_error(code: int | None) -> None:
    assert from_close(code) is None
    assert from_close(code, "bye") is None


def test_the_reason_becomes_the_message_or_the_default_when_empty() -> None:
    assert from_close(Close.CONFLICT, "another viewer is attached").message == (  # type: ignore[union-attr]
        "another viewer is attached")
    assert from_close(Close.CONFLICT).message == Conflict.default_message  # type: ignore[union-attr]
    assert from_close(Close.FORBIDDEN, "").message == "forbidden"  # type: ignore[union-attr]


def test_rate_limited_close_assumes_a_minute() -> None:
    err = from_close(Close.RATE_LIMITED)
    assert isinstance(err, RateLimited)
    assert err.retry_after == 60.0
    assert err.message == "Too many attempts — try again in 1 min"
    custom = from_close(Close.RATE_LIMITED, "slow down")
    assert custom is not None and custom.message == "slow down"


@pytest.mark.parametrize("code", [1002, 1006, 1012, 3000, 4000, 4999, 0, -1, 70000])
def test_an_unknown_code_is_a_generic_tether_error(code: int) -> None:
    err = from_close(code, "whatever")
    assert type(err) is TetherError
    assert err.close_code == Close.INTERNAL and err.message == "whatever"


def test_errors_that_share_a_code_differ_only_where_a_peer_cannot_see() -> None:
    # the peer sees 1011 for all of these; only HTTP and the local message differ
    for cls in (AuditUnavailable, TLSError, InternalError, TetherError):
        assert cls.close_code == Close.INTERNAL
    assert AuditUnavailable.http_status == 503
    assert BadCode.close_code == AuthError.close_code == Close.AUTH
    assert UnknownMessage.close_code == ProtocolError.close_code == Close.POLICY


def test_rate_limited_never_asks_for_less_than_a_second_and_rounds_minutes_up() -> None:
    assert RateLimited(0).retry_after == 1.0
    assert RateLimited(-5).retry_after == 1.0
    assert RateLimited(61).message.endswith("in 2 min")
    assert RateLimited(120).message.endswith("in 2 min")
    assert RateLimited(7200).message.endswith("in 120 min")
    # a day-long wait keeps DESIGN's "N min" and says it in hours too
    assert RateLimited(86_000).message.endswith("in 1434 min (about 24 h)")


def test_busy_is_load_not_a_refusal() -> None:
    err = from_close(Close.BUSY, "too many new clients from this address")
    assert isinstance(err, Busy) and not isinstance(err, RateLimited)
    assert err.message == "too many new clients from this address"
    assert Busy(0.2).retry_after == 1.0
