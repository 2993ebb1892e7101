"""The console frame: mounts static files, the kernel's pages, HTML error pages and the
security headers of every console response. Contexts add their pages with
``tessera.console.web.console_router()`` in their own ``views.py``.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.console import errors
from tessera.console.pages import access, admin, audit, auth, home, settings
from tessera.console.web import PREFIX

STATIC = Path(__file__).parent / "static"

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


class SecurityHeaders:
    """Strict CSP and anti-framing headers on console responses (pure ASGI: no buffering)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.startswith(PREFIX) or path == "/reset"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] not in dict(HEADERS)]
                headers.extend(HEADERS)
                if not path.startswith(PREFIX + "/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def mount(app: FastAPI) -> None:
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(STATIC)), name="console-static")
    for module in (auth, home, admin, access, audit, settings):
        app.include_router(module.router)
    try:  # the subscription kernel is optional
        from tessera.console.pages import subscription
    except ImportError:
        pass
    else:
        app.include_router(subscription.router)
    try:  # jobs and webhooks kernels are optional too
        from tessera.console.pages import ops
    except ImportError:
        pass
    else:
        app.include_router(ops.router)
    try:  # the operator console needs the jobs and monitoring kernels
        from tessera.console.pages import operator
    except ImportError:
        pass
    else:
        app.include_router(operator.router)
    app.include_router(auth.reset_link_router)
    errors.install(app)
    app.add_middleware(SecurityHeaders)
