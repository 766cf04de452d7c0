"""Exception tree; each class maps to one HTTP status and one error code."""

from __future__ import annotations


class RefreshdError(Exception):
    """Base of every error the service reports to a client."""

    status = 500
    code = "internal"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def body(self) -> dict[str, object]:
        """Return the error body every failure has: `{"error": {"code", "message", "field"}}`."""
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class MalformedJSON(RefreshdError):
    status = 400
    code = "malformed_json"


class BadRequest(RefreshdError):
    status = 400
    code = "bad_request"


class Unauthorized(RefreshdError):
    status = 401
    code = "unauthorized"


class Forbidden(RefreshdError):
    status = 403
    code = "forbidden"


class NotFound(RefreshdError):
    status = 404
    code = "not_found"


class MethodNotAllowed(RefreshdError):
    status = 405
    code = "method_not_allowed"


class Conflict(RefreshdError):
    status = 409
    code = "conflict"


class BodyTooLarge(RefreshdError):
    status = 413
    code = "body_too_large"


class UnsupportedMediaType(RefreshdError):
    status = 415
    code = "unsupported_media_type"


class InvalidValue(RefreshdError):
    status = 422
    code = "invalid_value"


class RateLimited(RefreshdError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after_s: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


class StoreUnavailable(RefreshdError):
    """The store could not be reached or timed out; writes must be retried later."""

    status = 503
    code = "store_unavailable"

    def __init__(self, message: str = "state store unavailable, retry later", **kw: object) -> None:
        super().__init__(message, field=None)
