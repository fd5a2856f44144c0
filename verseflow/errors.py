"""Domain errors, raised by plain-Python code and turned into RFC 9457 problems at the HTTP edge.

Domain packages raise these instead of HTTP exceptions so they stay free of web imports; the
mapping to status codes lives in one place (``serve_deployments/problems.py``).
"""

from __future__ import annotations


class DomainError(Exception):
    """Base class: ``title`` is a short, stable summary; the message is the detail for the client."""

    status = 400
    title = "Bad request"

    def __init__(self, detail: str = "", **extra: object) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class MalformedRequest(DomainError):
    """The request itself is unreadable (a protocol header missing or malformed), not its content."""

    status, title = 400, "Malformed request"


class InvalidInput(DomainError):
    status, title = 422, "Invalid input"


class Unauthorized(DomainError):
    status, title = 401, "Not authenticated"


class Forbidden(DomainError):
    status, title = 403, "Forbidden"


class NotFound(DomainError):
    status, title = 404, "Not found"


class Conflict(DomainError):
    status, title = 409, "Conflict"


class Gone(DomainError):
    status, title = 410, "Gone"


class PayloadTooLarge(DomainError):
    status, title = 413, "Payload too large"


class Locked(DomainError):
    """The resource is being changed by another request (a resumable upload's PATCH); retry later."""

    status, title = 423, "Locked"


class RateLimited(DomainError):
    status, title = 429, "Too many requests"

    def __init__(self, detail: str = "", *, retry_after: int = 1) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class FeatureDisabled(DomainError):
    status, title = 404, "Feature disabled"
