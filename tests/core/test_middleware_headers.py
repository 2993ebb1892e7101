"""Response headers added by the middlewares: the rate-limit headers reach every response once,
whether :class:`RequestContextMiddleware` adds them (the application's stack) or the rate-limit
middleware wraps ``send`` itself (used alone)."""

from __future__ import annotations

from typing import Any

from starlette.types import Message, Receive, Scope, Send

from tessera.core.http.idempotency import IdempotencyMiddleware
from tessera.core.http.middleware import BodyLimitMiddleware, RateLimitMiddleware, RequestContextMiddleware
from tessera.core.http.ratelimit import MemoryRateLimiter


async def _inner(scope: Scope, receive: Receive, send: Send) -> None:
    await send(
        {"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": "/v1/things/1",
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 1),
    }


async def _call(app: Any, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def _names(message: Message) -> list[bytes]:
    return [k for k, _ in message["headers"]]


async def test_stack_adds_rate_limit_headers_once() -> None:
    limiter = MemoryRateLimiter()
    app = RequestContextMiddleware(
        BodyLimitMiddleware(
            RateLimitMiddleware(IdempotencyMiddleware(_inner), limiter=limiter, per_key=5, per_ip=5),
            max_bytes=1000,
        )
    )
    for remaining in (b"4", b"3"):
        sent = await _call(app, _scope([(b"authorization", b"Bearer tsk_x"), (b"x-request-id", b"rid-1")]))
        start = sent[0]
        assert start["status"] == 404
        names = _names(start)
        for name in (b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset", b"x-request-id"):
            assert names.count(name) == 1, name
        headers = dict(start["headers"])
        assert headers[b"ratelimit-limit"] == b"5"
        assert headers[b"ratelimit-remaining"] == remaining
        assert headers[b"x-request-id"] == b"rid-1"
        assert headers[b"x-content-type-options"] == b"nosniff"
        assert sent[1]["body"] == b"{}"


async def test_rate_limit_alone_wraps_send() -> None:
    app = RateLimitMiddleware(_inner, limiter=MemoryRateLimiter(), per_key=5, per_ip=7)
    sent = await _call(app, _scope([]))
    headers = dict(sent[0]["headers"])
    assert headers[b"ratelimit-limit"] == b"7"
    assert _names(sent[0]).count(b"ratelimit-remaining") == 1


async def test_body_limit_refuses_declared_length_with_request_id() -> None:
    app = RequestContextMiddleware(BodyLimitMiddleware(_inner, max_bytes=10))
    scope = _scope([(b"content-length", b"11"), (b"x-request-id", b"rid-2")])
    scope["method"] = "POST"
    sent = await _call(app, scope)
    assert sent[0]["status"] == 413
    assert b'"request_id":"rid-2"' in sent[1]["body"]
