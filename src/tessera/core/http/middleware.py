"""ASGI middleware: request context, access log and metrics, body limit, rate limits."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import secrets
import time
from typing import Any

import orjson
import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.core import context
from tessera.core.http.ratelimit import RateLimiter
from tessera.core.logging import log_info_enabled
from tessera.core.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = structlog.get_logger("tessera.http")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", []):
        if k == name:
            return str(v.decode("latin-1"))
    return None


def client_ip(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "unknown"


def error_message(code: str, message: str, request_id: str, **details: Any) -> bytes:
    body: dict[str, Any] = {"code": code, "message": message, "field": None, "request_id": request_id}
    if details:
        body["details"] = details
    return orjson.dumps({"error": body})


async def send_json(
    send: Send, status: int, body: bytes, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += SECURITY_HEADERS + (extra or [])
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


_observers: dict[tuple[str, str, int], tuple[Any, Any]] = {}


def _observer(method: str, template: str, status: int) -> tuple[Any, Any]:
    """The counter and histogram children of one (method, route template, status): looked up
    once, not through ``labels()`` (a lock and a label check) on every request."""
    key = (method, template, status)
    found = _observers.get(key)
    if found is None:
        if len(_observers) > 10_000:  # templates are bounded; methods from clients are not
            _observers.clear()
        found = _observers[key] = (
            HTTP_REQUESTS.labels(method, template, str(status)),
            HTTP_LATENCY.labels(method, template, str(status)),
        )
    return found


class _RequestIds:
    """Request ids: 32 hex digits, a random half drawn when the process starts (and again in a
    forked child) and a counter. Unique per process and, by the random half, across processes,
    without drawing 16 random bytes from the kernel for every request as ``uuid4`` does."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = secrets.token_hex(8)
        self.counter = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


new_request_id = _RequestIds()

_UNLOGGED = ("/healthz", "/metrics")

# Scope key of the list of headers :class:`RequestContextMiddleware` adds to the response.
RESPONSE_HEADERS = "tessera.response_headers"


class RequestContextMiddleware:
    """Request id, client address, access log line and Prometheus figures per route template."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        agent = None
        for k, v in scope["headers"]:
            if k == b"x-request-id" and rid is None:
                rid = v.decode("latin-1")[:64]
            elif k == b"user-agent" and agent is None:
                agent = v.decode("latin-1")
        if not rid:
            rid = new_request_id()
        client = scope.get("client")
        context.set_request(
            context.RequestContext(request_id=rid, ip=client[0] if client else "unknown", user_agent=agent)
        )
        context.bind(None, context.SYSTEM)
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        # Headers that inner middlewares (the rate limit) add to the response: appended here,
        # in this one send wrapper, instead of each wrapping ``send`` once more.
        added: list[tuple[bytes, bytes]] = []
        scope[RESPONSE_HEADERS] = added
        status = 500
        start = time.perf_counter()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                present = {k for k, _ in headers}
                headers += added
                headers.append(rid_header)
                headers += [h for h in SECURITY_HEADERS if h[0] not in present]
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            requests, latency = _observer(method, template, status)
            requests.inc()
            latency.observe(elapsed)
            if template not in _UNLOGGED and not template.startswith("/static") and log_info_enabled():
                log.info(
                    "http.request", method=method, route=template, status=status, ms=round(elapsed * 1000, 2)
                )


# A JSON "\u0000" escape not itself escaped by a backslash, or a URL-encoded NUL.
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_URL_NUL = re.compile(rb"%00")
NUL_MESSAGE = "text may not contain NUL (\\u0000) characters"


def _nul_pattern(scope: Scope) -> re.Pattern[bytes] | None:
    """How NUL would appear in this request's body; None for bodies that may hold binary data."""
    ctype = (header(scope, b"content-type") or "").lower()
    if "json" in ctype:
        return _JSON_NUL
    if ctype.startswith("application/x-www-form-urlencoded"):
        return _URL_NUL
    return None


UPLOAD_PATHS: set[str] = set()


def register_upload_path(path: str) -> None:
    """Let a POST to exactly ``path`` (a file upload endpoint) use the larger
    ``max_upload_bytes`` limit; every other body keeps ``max_body_bytes``."""
    UPLOAD_PATHS.add(path.rstrip("/"))


class BodyLimitMiddleware:
    """The request-body guard: the size limit (413) and NUL characters (422).

    NUL is refused here, once, because PostgreSQL cannot store it in text or JSON; refusing it on
    every backend keeps SQLite and PostgreSQL alike. Uploads (other content types) may hold it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, upload_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = max(upload_bytes or max_bytes, max_bytes)

    def limit_for(self, scope: Scope) -> int:
        """A POST to a registered upload path (a file import) may be larger than other bodies."""
        if scope.get("method") == "POST" and scope.get("path", "").rstrip("/") in UPLOAD_PATHS:
            return self.upload_bytes
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        chunked = False
        for k, v in scope.get("headers", ()):  # one pass for both framing headers
            if k == b"content-length":
                if declared is None:
                    declared = v.decode("latin-1")
            elif k == b"transfer-encoding":
                chunked = True
        max_bytes = self.limit_for(scope)
        if declared and declared.isdigit() and int(declared) > max_bytes:
            rid = context.current_request().request_id
            await send_json(
                send,
                413,
                error_message("request.too_large", f"the request body exceeds {max_bytes} bytes", rid),
            )
            return
        if "\x00" in scope["path"] or _URL_NUL.search(scope.get("query_string", b"")):
            rid = context.current_request().request_id
            await send_json(send, 422, error_message("request.nul_character", NUL_MESSAGE, rid))
            return
        if (
            (declared is None or declared == "0")
            and scope.get("http_version") in ("1.0", "1.1")
            and not chunked
        ):
            # No body can follow (HTTP/1.x frames a request body with one of the two headers):
            # nothing to guard, so no wrapped receive and send.
            await self.app(scope, receive, send)
            return
        rid = context.current_request().request_id
        nul = _nul_pattern(scope)
        received = 0
        tail = b""
        responded = False

        # Answer ourselves and tell the app the client went away: raising from receive()
        # would be swallowed by FastAPI's body parser and turned into a 400.
        async def refuse(status: int, code: str, message: str) -> Message:
            nonlocal responded
            responded = True
            await send_json(send, status, error_message(code, message, rid))
            return {"type": "http.disconnect"}

        async def guarded_receive() -> Message:
            nonlocal received, tail
            if responded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                received += len(chunk)
                if received > max_bytes:
                    return await refuse(
                        413, "request.too_large", f"the request body exceeds {max_bytes} bytes"
                    )
                if nul is not None:
                    window = tail + chunk  # a match may straddle two chunks
                    if nul.search(window):
                        return await refuse(422, "request.nul_character", NUL_MESSAGE)
                    tail = window[-16:]
            return message

        async def guarded_send(message: Message) -> None:
            if not responded:
                await send(message)

        await self.app(scope, guarded_receive, guarded_send)


def credential_of(scope: Scope) -> str | None:
    auth = header(scope, b"authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip()
    cookie = header(scope, b"cookie")
    if cookie:
        for part in cookie.split(";"):
            k, _, v = part.strip().partition("=")
            if k == "tessera_session" and v:
                return "cookie:" + v
    return None


def credential_hash(scope: Scope) -> str | None:
    cred = credential_of(scope)
    return hashlib.sha256(cred.encode()).hexdigest() if cred else None


class RateLimitMiddleware:
    """Per-credential and per-IP token buckets with ``RateLimit-*`` and ``Retry-After`` headers."""

    EXEMPT = ("/healthz", "/readyz", "/metrics", "/static/")

    def __init__(self, app: ASGIApp, limiter: RateLimiter, per_key: int, per_ip: int) -> None:
        self.app = app
        self.limiter = limiter
        self.per_key = per_key
        self.per_ip = per_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.EXEMPT):
            await self.app(scope, receive, send)
            return
        cred = credential_hash(scope)
        if cred:
            decision = await self.limiter.hit("k:" + cred, self.per_key)
        else:
            decision = await self.limiter.hit("ip:" + client_ip(scope), self.per_ip)
        rl_headers = [
            (b"ratelimit-limit", str(decision.limit).encode()),
            (b"ratelimit-remaining", str(decision.remaining).encode()),
            (b"ratelimit-reset", str(decision.reset_seconds).encode()),
        ]
        if not decision.allowed:
            rid = context.current_request().request_id
            body = error_message(
                "rate_limit.exceeded",
                f"rate limit of {decision.limit} requests per minute exceeded; "
                f"retry after {decision.retry_after} s",
                rid,
            )
            await send_json(
                send, 429, body, [*rl_headers, (b"retry-after", str(decision.retry_after).encode())]
            )
            return

        added = scope.get(RESPONSE_HEADERS)
        if added is not None:  # RequestContextMiddleware's send wrapper adds them
            added += rl_headers
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + rl_headers
            await send(message)

        await self.app(scope, receive, send_wrapper)
