"""One exception root for all of Tether.

Every error knows the message a peer may see, and the WebSocket close code
and HTTP status that carry it. Internals never reach a peer: an unexpected
exception is logged in full and the peer gets a generic :class:`InternalError`.

    TetherError
    ├── ProtocolError            a peer sent something malformed (1008 / 400)
    │   ├── MessageTooBig        over the size limit of its channel (1009 / 413)
    │   └── UnknownMessage       a type this side does not know (1008 / 400)
    ├── AuthError                missing, wrong, used or expired credential (4401 / 401)
    │   └── BadCode              a session code that is not valid (4401 / 400)
    ├── Forbidden                signed in but not allowed; bad Origin (4403 / 403)
    ├── NotFound                 no such session / channel (4404 / 404)
    ├── Conflict                 not possible in the current state (4409 / 409)
    ├── RateLimited              too many attempts; carries retry_after (4429 / 429)
    ├── Busy                     load, not a refusal: wait and try again (4503 / 503)
    ├── Timeout                  a pairing or prompt deadline passed (4408 / 408)
    ├── AuditUnavailable         the audit log or a recording cannot be written (1011 / 503)
    ├── StoreUnavailable         the database failed; translated by the store (1011 / 503)
    ├── TLSError                 the broker's certificate or host name failed (client exit 3)
    └── InternalError            anything unexpected, shown generically (1011 / 500)
"""

from __future__ import annotations

from enum import IntEnum


class Close(IntEnum):
    """Every WebSocket close code Tether sends, in one place."""

    NORMAL = 1000
    POLICY = 1008  # a malformed frame
    TOO_BIG = 1009
    INTERNAL = 1011  # unexpected error, or the audit log / recording failed
    AUTH = 4401  # not signed in, revoked, bad or used secret
    FORBIDDEN = 4403
    NOT_FOUND = 4404
    TIMEOUT = 4408
    CONFLICT = 4409  # e.g. another viewer is attached
    RATE_LIMITED = 4429
    BUSY = 4503  # too much load from this address or in all: the client waits and retries


class TetherError(Exception):
    close_code: int = Close.INTERNAL
    http_status: int = 500
    default_message: str = "internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class ProtocolError(TetherError):
    close_code = Close.POLICY
    http_status = 400
    default_message = "malformed message"


class MessageTooBig(ProtocolError):
    close_code = Close.TOO_BIG
    http_status = 413
    default_message = "message too big"


class UnknownMessage(ProtocolError):
    default_message = "unknown message type"


class AuthError(TetherError):
    close_code = Close.AUTH
    http_status = 401
    default_message = "not authenticated"


class BadCode(AuthError):
    http_status = 400
    default_message = "That code is not valid"


class Forbidden(TetherError):
    close_code = Close.FORBIDDEN
    http_status = 403
    default_message = "forbidden"


class NotFound(TetherError):
    close_code = Close.NOT_FOUND
    http_status = 404
    default_message = "not found"


class Conflict(TetherError):
    close_code = Close.CONFLICT
    http_status = 409
    default_message = "not possible in the current state"


class RateLimited(TetherError):
    close_code = Close.RATE_LIMITED
    http_status = 429
    default_message = "too many attempts"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = max(1.0, retry_after)
        super().__init__(message or f"Too many attempts — try again in"
                                    f" {self.wait_text(self.retry_after)}")

    @staticmethod
    def wait_text(seconds: float) -> str:
        """``"4 min"``; past two hours ``"1440 min (about 24 h)"`` (DESIGN's wording is
        "try again in N min", and a day-long wait should not need a calculator)."""
        minutes = max(1, -(-int(seconds) // 60))
        return f"{minutes} min (about {-(-minutes // 60)} h)" if minutes > 120 else f"{minutes} min"


class Busy(TetherError):
    """Not a refusal of this client: the broker has too much to do from its address
    (or in all) right now. The client says so, waits ``retry_after`` and tries again."""

    close_code = Close.BUSY
    http_status = 503
    default_message = "the broker is busy"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = max(1.0, retry_after)
        super().__init__(message)


class Timeout(TetherError):
    close_code = Close.TIMEOUT
    http_status = 408
    default_message = "timed out"


class AuditUnavailable(TetherError):
    close_code = Close.INTERNAL
    http_status = 503
    default_message = "the audit log or recording cannot be written; no new channels"


class StoreUnavailable(TetherError):
    http_status = 503
    default_message = "the database is unavailable"


class TLSError(TetherError):
    default_message = "certificate verification failed"


class InternalError(TetherError):
    """What a peer is told about an unexpected exception (logged in full here)."""


#: the error a close code stands for, so a peer decodes it through one table
_BY_CLOSE: dict[int, type[TetherError]] = {
    Close.POLICY: ProtocolError,
    Close.TOO_BIG: MessageTooBig,
    Close.AUTH: AuthError,
    Close.FORBIDDEN: Forbidden,
    Close.NOT_FOUND: NotFound,
    Close.TIMEOUT: Timeout,
    Close.CONFLICT: Conflict,
    Close.INTERNAL: InternalError,
}


def from_close(code: int | None, reason: str = "") -> TetherError | None:
    """The error behind a close frame (None for a normal close).

    ``RateLimited`` and ``Busy`` need a delay the frame does not carry: 60 s and
    the client's own back-off are assumed.
    """
    if code is None or code in (Close.NORMAL, 1001):
        return None
    if code == Close.RATE_LIMITED:
        return RateLimited(60.0, reason or None)
    if code == Close.BUSY:
        return Busy(1.0, reason or None)
    return _BY_CLOSE.get(code, TetherError)(reason or None)
