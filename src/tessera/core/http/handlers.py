"""One renderer for every error: ``{"error": {"code", "message", "field", "request_id"}}``."""

from __future__ import annotations

from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException

from tessera.core import context
from tessera.core.http.errors import TesseraError

log = structlog.get_logger("tessera.errors")


class ORJSONResponse(Response):
    """JSON via orjson (FastAPI's own ORJSONResponse is deprecated and warns on every use)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


_RULES = {
    "missing": "is required",
    "string_too_short": "is too short",
    "string_too_long": "is too long",
    "string_pattern_mismatch": "does not match the required pattern",
    "value_error": "is not valid",
    "extra_forbidden": "is not an accepted field",
    "uuid_parsing": "is not a valid UUID",
    "too_long": "has too many items",
    "too_short": "has too few items",
}


def _field_name(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie")]
    return ".".join(parts) or str(loc[-1] if loc else "")


def _body(code: str, message: str, field: str | None, **extra: Any) -> dict[str, Any]:
    err: dict[str, Any] = {
        "code": code,
        "message": message,
        "field": field,
        "request_id": context.current_request().request_id or None,
    }
    if extra:
        err["details"] = extra
    return {"error": err}


async def tessera_error(request: Request, exc: Exception) -> ORJSONResponse:
    assert isinstance(exc, TesseraError)
    headers = {}
    if "retry_after" in exc.details:
        headers["Retry-After"] = str(exc.details["retry_after"])
    return ORJSONResponse(
        _body(exc.code, exc.message, exc.field, **exc.details), status_code=exc.status, headers=headers
    )


async def validation_error(request: Request, exc: Exception) -> ORJSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for e in exc.errors():
        field = _field_name(tuple(e.get("loc", ())))
        rule = e.get("type", "invalid")
        msg = e.get("msg", "is not valid")
        errors.append({"field": field, "rule": rule, "message": f"{field}: {msg}"})
    first = errors[0] if errors else {"field": None, "rule": "invalid", "message": "invalid request"}
    return ORJSONResponse(
        _body("request.invalid", str(first["message"]), first["field"], rule=first["rule"], errors=errors),
        status_code=422,
    )


async def http_error(request: Request, exc: Exception) -> ORJSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):
        # FastAPI's body parser (undecodable bytes): bad input is a 422 naming the field and rule.
        return ORJSONResponse(
            _body(
                "request.invalid",
                "body: the request body could not be parsed",
                "body",
                rule="body_unparsable",
            ),
            status_code=422,
        )
    codes = {404: "resource.not_found", 405: "request.method_not_allowed", 401: "auth.unauthenticated"}
    code = codes.get(exc.status_code, f"http.{exc.status_code}")
    return ORJSONResponse(
        _body(code, str(exc.detail), None), status_code=exc.status_code, headers=exc.headers
    )


async def database_busy(request: Request, exc: Exception) -> ORJSONResponse:
    """No database connection came free within the pool's timeout (overload): a 503 the client
    can retry, not an unexpected error. The request's unit of work never began, or is rolled
    back by its exit, so nothing is half written."""
    log.warning("http.database_busy", error=str(exc))
    return ORJSONResponse(
        _body("service.busy", "the database has no free connection; retry shortly", None),
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def unhandled_error(request: Request, exc: Exception) -> ORJSONResponse:
    log.exception("http.unhandled", exc_info=exc)
    return ORJSONResponse(
        _body("internal.error", "an unexpected error occurred; it has been logged", None),
        status_code=500,
    )


def install(app: FastAPI) -> None:
    app.add_exception_handler(TesseraError, tessera_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(PoolTimeout, database_busy)
    app.add_exception_handler(Exception, unhandled_error)
