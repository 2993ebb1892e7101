"""``Idempotency-Key`` on every POST: a replay within the TTL returns the first response.

The key is scoped by the caller's credential (hash of the API key or session cookie, or
the client address when anonymous). The same key with a different body answers 422
``idempotency.key_reused``; a key whose first request is still running answers 409. Responses
with a 5xx status are not stored, so the client may retry them.
"""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.core import context
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.http.middleware import client_ip, credential_hash, error_message, header, send_json
from tessera.core.http.models import IdempotencyRecord

PENDING_STALE = dt.timedelta(minutes=5)
MAX_STORED = 1024 * 1024


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, ttl_hours: int = 24) -> None:
        self.app = app
        self.ttl = dt.timedelta(hours=ttl_hours)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = header(scope, b"idempotency-key") if scope["type"] == "http" else None
        if not key or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        rid = context.current_request().request_id
        if len(key) > 255:
            await send_json(
                send,
                422,
                error_message(
                    422, "idempotency.invalid_key", "Idempotency-Key must be at most 255 characters", rid
                ),
            )
            return
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    break
            else:
                return  # the client went away (or the body limit answered 413)
        body = b"".join(chunks)
        cred = credential_hash(scope) or "ip:" + client_ip(scope)
        req_hash = hashlib.sha256(scope["path"].encode() + b"\0" + body).hexdigest()
        now = utcnow()

        async with unit_of_work(platform=True) as s:
            rec = (
                await s.execute(
                    select(IdempotencyRecord).where(
                        IdempotencyRecord.scope == cred, IdempotencyRecord.key == key
                    )
                )
            ).scalar_one_or_none()
            if rec is not None and rec.expires_at <= now:
                await s.delete(rec)
                await s.flush()
                rec = None
            if rec is not None:
                if rec.request_hash != req_hash:
                    await send_json(
                        send,
                        422,
                        error_message(
                            422,
                            "idempotency.key_reused",
                            "this Idempotency-Key was already used with a different request",
                            rid,
                        ),
                    )
                    return
                if rec.state == "done" and rec.status_code is not None:
                    await send(
                        {
                            "type": "http.response.start",
                            "status": rec.status_code,
                            "headers": [
                                (b"content-type", (rec.content_type or "application/json").encode()),
                                (b"idempotent-replayed", b"true"),
                            ],
                        }
                    )
                    await send({"type": "http.response.body", "body": rec.body or b""})
                    return
                if now - rec.created_at < PENDING_STALE:
                    await send_json(
                        send,
                        409,
                        error_message(
                            409,
                            "idempotency.in_progress",
                            "a request with this Idempotency-Key is still being processed",
                            rid,
                        ),
                    )
                    return
                await s.delete(rec)
                await s.flush()
        try:
            async with unit_of_work(platform=True) as s:
                s.add(
                    IdempotencyRecord(
                        scope=cred,
                        key=key,
                        request_hash=req_hash,
                        state="pending",
                        created_at=now,
                        expires_at=now + self.ttl,
                    )
                )
        except IntegrityError:
            await send_json(
                send,
                409,
                error_message(
                    409,
                    "idempotency.in_progress",
                    "a request with this Idempotency-Key is still being processed",
                    rid,
                ),
            )
            return

        sent = False

        async def replay_receive() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        status = 500
        content_type = "application/json"
        out: list[bytes] = []

        async def capture(message: Message) -> None:
            nonlocal status, content_type
            if message["type"] == "http.response.start":
                status = message["status"]
                for k, v in message.get("headers", []):
                    if k == b"content-type":
                        content_type = v.decode("latin-1")
            elif message["type"] == "http.response.body":
                out.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, replay_receive, capture)
        finally:
            stored = b"".join(out)
            async with unit_of_work(platform=True) as s:
                if status >= 500 or len(stored) > MAX_STORED:
                    await s.execute(
                        delete(IdempotencyRecord).where(
                            IdempotencyRecord.scope == cred, IdempotencyRecord.key == key
                        )
                    )
                else:
                    rec = (
                        await s.execute(
                            select(IdempotencyRecord).where(
                                IdempotencyRecord.scope == cred, IdempotencyRecord.key == key
                            )
                        )
                    ).scalar_one()
                    rec.state = "done"
                    rec.status_code = status
                    rec.content_type = content_type
                    rec.body = stored
