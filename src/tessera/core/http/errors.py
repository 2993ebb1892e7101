"""The error model: every expected problem is a :class:`TesseraError` with a stable code."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel


class TesseraError(Exception):
    """Base of every expected error. Subclasses set ``code`` and ``status``."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    message: str
    field: str | None

    def __init__(self, message: str | None = None, *, field: str | None = None, **details: Any) -> None:
        self.message = message or self.default_message()
        self.field = field
        self.details = details
        super().__init__(self.message)

    @classmethod
    def default_message(cls) -> str:
        return cls.__doc__.strip().splitlines()[0] if cls.__doc__ else cls.code


class InvalidInput(TesseraError):
    """The request is not valid."""

    code = "request.invalid"
    status = 422


class Unauthenticated(TesseraError):
    """Authentication is required."""

    code = "auth.unauthenticated"
    status = 401


class Forbidden(TesseraError):
    """You do not have permission to do this."""

    code = "auth.forbidden"
    status = 403


class NotFound(TesseraError):
    """The resource does not exist."""

    code = "resource.not_found"
    status = 404


class Conflict(TesseraError):
    """The request conflicts with the current state."""

    code = "resource.conflict"
    status = 409


class RateLimited(TesseraError):
    """Too many requests."""

    code = "rate_limit.exceeded"
    status = 429


class PayloadTooLarge(TesseraError):
    """The request body is too large."""

    code = "request.too_large"
    status = 413


class IdempotencyMismatch(TesseraError):
    """This Idempotency-Key was used with a different request body."""

    code = "idempotency.key_reused"
    status = 422


class IdempotencyInProgress(TesseraError):
    """A request with this Idempotency-Key is still being processed."""

    code = "idempotency.in_progress"
    status = 409


class TenantSuspended(TesseraError):
    """This tenant is suspended."""

    code = "tenant.suspended"
    status = 403


class ErrorBody(BaseModel):
    code: str
    message: str
    field: str | None = None
    request_id: str | None = None
    details: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """The shape of every error response."""

    error: ErrorBody


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries documenting error statuses of an operation."""
    descriptions = {
        400: "Bad request",
        401: "Not authenticated",
        402: "Subscription quota exceeded",
        403: "Forbidden",
        404: "Not found (also for another tenant's records)",
        409: "Conflict",
        413: "Request body too large",
        422: "Validation error naming the field and rule",
        429: "Rate limited",
        503: "Busy: no database connection came free in time (retry after Retry-After seconds)",
    }
    return {s: {"model": ErrorResponse, "description": descriptions.get(s, "Error")} for s in statuses}


COMMON_ERRORS = error_responses(401, 403, 413, 422, 429, 503)


class CsrfFailed(Forbidden):
    """Missing or invalid CSRF token."""

    code = "auth.csrf"
