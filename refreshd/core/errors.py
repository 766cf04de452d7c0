"""The domain's exception tree: what went wrong, in the core's terms.

No HTTP here: how each class is reported on the wire (status, error code, headers) is one
table in `refreshd.http.errors`, looked up along the class's MRO, so subclasses such as
`RuleError(InvalidValue, ValueError)` are reported as their nearest mapped base.
"""

from __future__ import annotations


class RefreshdError(Exception):
    """Base of every error the service reports to a client."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class MalformedJSON(RefreshdError):
    """The body is not JSON (or not UTF-8)."""


class BadRequest(RefreshdError):
    """The request is malformed in a way no other class names."""


class Unauthorized(RefreshdError):
    """No credentials where the operation needs them."""


class Forbidden(RefreshdError):
    """Credentials given, but wrong."""


class NotFound(RefreshdError):
    """No such item (or route)."""


class MethodNotAllowed(RefreshdError):
    """The item exists but does not support the operation."""


class Conflict(RefreshdError):
    """The operation conflicts with the current state (retry, or change the request)."""


class BodyTooLarge(RefreshdError):
    """The request body exceeds the configured limit."""


class UriTooLong(RefreshdError):
    """The query string exceeds the service's limit."""


class HeadersTooLarge(RefreshdError):
    """A request header exceeds the service's limit."""


class UnsupportedMediaType(RefreshdError):
    """The body is not of a type the operation reads."""


class InvalidValue(RefreshdError):
    """A value is out of range or of the wrong type; `field` names it."""


class RateLimited(RefreshdError):
    """Too many operations; the caller may retry after `retry_after_s` seconds."""

    def __init__(self, message: str, *, retry_after_s: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


class StoreUnavailable(RefreshdError):
    """The store could not be reached or timed out; writes must be retried later."""

    def __init__(self, message: str = "state store unavailable, retry later", **kw: object) -> None:
        super().__init__(message, field=None)
