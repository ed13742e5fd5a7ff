"""Errors with a stable `code` and an HTTP `status`.

Domain code raises these; the server renders every one of them as an RFC 9457 problem document
(``application/problem+json``) in one shape, so clients can branch on ``code``.

    ControlroomError
     ├── BadRequest            400 bad_request
     │    ├── InvalidJSON      400 invalid_json
     │    ├── InvalidEncoding  400 invalid_encoding
     │    ├── InvalidEvent     400 invalid_event
     │    └── InvalidQuery     400 invalid_query
     ├── BudgetRefused         402 daily_cost_cap_reached  (controlroom.budget.ledger)
     ├── Unauthorized          401 unauthorized
     ├── Forbidden             403 forbidden
     ├── NotFound              404 not_found
     ├── Conflict              409 conflict
     ├── PayloadTooLarge       413 payload_too_large
     ├── UnsupportedMediaType  415 unsupported_media_type
     ├── ValidationFailed      422 validation_failed
     ├── TooManyRequests       429 too_many_requests  (with Retry-After)
     └── ServiceUnavailable    503 service_unavailable
"""

from __future__ import annotations

from typing import Any


class ControlroomError(Exception):
    """Base of every error controlroom raises on purpose."""

    status: int = 500
    code: str = "internal_error"
    title: str = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def problem(self) -> dict[str, Any]:
        """The RFC 9457 problem document for this error."""
        doc: dict[str, Any] = {
            "type": f"https://controlroom.dev/problems/{self.code}",
            "title": self.title,
            "status": self.status,
            "code": self.code,
            "detail": self.detail,
        }
        doc.update(self.extra)
        return doc

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the problem document."""
        return {}


def internal_error() -> dict[str, Any]:
    """The problem document of an unexpected error (500); the details go to the server log only."""
    return ControlroomError("an unexpected error; see the server log").problem()


class BadRequest(ControlroomError):
    status, code, title = 400, "bad_request", "Bad request"


class InvalidJSON(BadRequest):
    code, title = "invalid_json", "Body is not valid JSON"


class InvalidEncoding(BadRequest):
    code, title = "invalid_encoding", "Body cannot be decompressed"


class InvalidEvent(BadRequest):
    code, title = "invalid_event", "Invalid event"


class InvalidQuery(BadRequest):
    code, title = "invalid_query", "Invalid query parameter"


class Unauthorized(ControlroomError):
    status, code, title = 401, "unauthorized", "Missing or invalid API key"


class Forbidden(ControlroomError):
    status, code, title = 403, "forbidden", "Forbidden"


class NotFound(ControlroomError):
    status, code, title = 404, "not_found", "Not found"


class Conflict(ControlroomError):
    status, code, title = 409, "conflict", "Conflict"


class PayloadTooLarge(ControlroomError):
    status, code, title = 413, "payload_too_large", "Payload too large"


class UnsupportedMediaType(ControlroomError):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class ValidationFailed(ControlroomError):
    status, code, title = 422, "validation_failed", "Validation failed"


class ServiceUnavailable(ControlroomError):
    status, code, title = 503, "service_unavailable", "Service unavailable"


class ConfigError(ValueError):
    """A setting has a bad value; raised at start, before anything runs."""


class TooManyRequests(ControlroomError):
    status, code, title = 429, "too_many_requests", "Too many requests"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}
