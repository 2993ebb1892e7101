"""HTML error pages for console routes; API routes keep the JSON error body.

The app's JSON handlers are wrapped rather than replaced: a request is a console request when
its route is a :class:`~tessera.console.web.ConsoleRoute` or its path is under ``/console``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tessera.console import i18n
from tessera.console.web import PREFIX, redirect, render
from tessera.core import context
from tessera.core.http.errors import TesseraError, Unauthenticated
from tessera.core.identity.errors import MfaRequired

log = structlog.get_logger("tessera.console")
Handler = Callable[[Request, Exception], Awaitable[Response]]


def is_console(request: Request) -> bool:
    route = request.scope.get("route")
    if getattr(route, "console", False):
        return True
    return request.url.path == PREFIX or request.url.path.startswith(PREFIX + "/")


def error_page(request: Request, status: int, message: str | None = None, code: str = "") -> Response:
    titles = {
        403: i18n.gettext("You do not have access to this page"),
        404: i18n.gettext("Page not found"),
        422: i18n.gettext("That request was not valid"),
        500: i18n.gettext("Something went wrong"),
    }
    hints = {
        403: i18n.gettext("Ask an administrator of your workspace for the permission you need."),
        404: i18n.gettext("The page or record does not exist, or it is not visible to you."),
        500: i18n.gettext("The error has been logged. Try again in a moment."),
    }
    pg = getattr(request.state, "console_page", None)
    return render(
        request,
        "console/error.html",
        status_code=status,
        page=pg,
        status=status,
        title=titles.get(status, titles[422] if status < 500 else titles[500]),
        message=message or hints.get(status, ""),
        code=code,
        request_id=context.current_request().request_id,
    )


def _login_redirect(request: Request, exc: Exception) -> Response:
    if isinstance(exc, MfaRequired):
        return redirect(request, f"{PREFIX}/login/mfa")
    if request.url.path.startswith(f"{PREFIX}/operator"):
        return redirect(request, f"{PREFIX}/operator/login")
    nxt = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    target = f"{PREFIX}/login"
    if request.method == "GET" and nxt.startswith(PREFIX) and nxt != target:
        target += "?" + urllib.parse.urlencode({"next": nxt})
    resp = redirect(request, target)
    if getattr(exc, "details", {}).get("reason") == "idle":
        resp = redirect(request, target + ("&" if "?" in target else "?") + "timeout=1")
    return resp


def install(app: FastAPI) -> None:
    handlers: dict[Any, Any] = app.exception_handlers
    json_tessera: Handler = handlers[TesseraError]
    json_validation: Handler = handlers[RequestValidationError]
    json_http: Handler = handlers[StarletteHTTPException]
    json_unhandled: Handler = handlers[Exception]

    async def tessera_error(request: Request, exc: Exception) -> Response:
        if not is_console(request):
            return await json_tessera(request, exc)
        assert isinstance(exc, TesseraError)
        if isinstance(exc, Unauthenticated | MfaRequired):
            return _login_redirect(request, exc)
        return error_page(request, exc.status, exc.message, exc.code)

    async def validation_error(request: Request, exc: Exception) -> Response:
        if not is_console(request):
            return await json_validation(request, exc)
        assert isinstance(exc, RequestValidationError)
        # A malformed id in a console URL is a page that does not exist.
        if any(e.get("loc", ("",))[0] == "path" for e in exc.errors()):
            return error_page(request, 404)
        return error_page(request, 422)

    async def http_error(request: Request, exc: Exception) -> Response:
        if not is_console(request):
            return await json_http(request, exc)
        assert isinstance(exc, StarletteHTTPException)
        return error_page(request, exc.status_code if exc.status_code in (403, 404) else 422)

    async def unhandled(request: Request, exc: Exception) -> Response:
        if not is_console(request):
            return await json_unhandled(request, exc)
        log.exception("console.unhandled", exc_info=exc)
        try:
            return error_page(request, 500)
        except Exception:  # the error page itself failed: fall back to the JSON body
            return await json_unhandled(request, exc)

    app.add_exception_handler(TesseraError, tessera_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unhandled)
