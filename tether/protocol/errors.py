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
    ├── ConsentDenied            the customer said no, or did not answer (4403 / 403)
    ├── Timeout                  a pairing or prompt deadline passed (4408 / 408)
    ├── AuditUnavailable         the audit log or a recording cannot be written (1011 / 503)
    ├── TLSError                 the broker's certificate or host name failed (client exit 3)
    └── InternalError            anything unexpected, shown generically (1011 / 500)
"""

from __future__ import annotations


class TetherError(Exception):
    close_code: int = 1011
    http_status: int = 500
    default_message: str = "internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class ProtocolError(TetherError):
    close_code = 1008
    http_status = 400
    default_message = "malformed message"


class MessageTooBig(ProtocolError):
    close_code = 1009
    http_status = 413
    default_message = "message too big"


class UnknownMessage(ProtocolError):
    default_message = "unknown message type"


class AuthError(TetherError):
    close_code = 4401
    http_status = 401
    default_message = "not authenticated"


class BadCode(AuthError):
    http_status = 400
    default_message = "That code is not valid"


class Forbidden(TetherError):
    close_code = 4403
    http_status = 403
    default_message = "forbidden"


class NotFound(TetherError):
    close_code = 4404
    http_status = 404
    default_message = "not found"


class Conflict(TetherError):
    close_code = 4409
    http_status = 409
    default_message = "not possible in the current state"


class RateLimited(TetherError):
    close_code = 4429
    http_status = 429
    default_message = "too many attempts"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        self.retry_after = max(1.0, retry_after)
        minutes = max(1, -(-int(self.retry_after) // 60))
        super().__init__(message or f"Too many attempts — try again in {minutes} min")


class ConsentDenied(TetherError):
    close_code = 4403
    http_status = 403
    default_message = "refused by the customer"


class Timeout(TetherError):
    close_code = 4408
    http_status = 408
    default_message = "timed out"


class AuditUnavailable(TetherError):
    close_code = 1011
    http_status = 503
    default_message = "the audit log or recording cannot be written; no new channels"


class TLSError(TetherError):
    default_message = "certificate verification failed"


class InternalError(TetherError):
    pass
