"""Errors of verification codes (stable codes)."""

from __future__ import annotations

from tessera.core.http.errors import Conflict, InvalidInput, NotFound, RateLimited


class VerificationNotFound(NotFound):
    """The verification does not exist."""

    code = "verify.not_found"


class VerifyInvalid(InvalidInput):
    """The verification request is not valid."""

    code = "verify.invalid"

    def __init__(self, message: str, *, field: str, rule: str) -> None:
        super().__init__(message, field=field, rule=rule)


class VerifyLimited(RateLimited):
    """Too many verifications."""

    code = "verify.rate_limited"

    def __init__(self, message: str, *, field: str | None, rule: str, retry_after: int) -> None:
        super().__init__(message, field=field, rule=rule, retry_after=retry_after)


class VerificationClosed(Conflict):
    """The verification is no longer pending."""

    code = "verify.closed"
