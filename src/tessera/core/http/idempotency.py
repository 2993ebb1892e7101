"""``Idempotency-Key`` on every POST: a replay within the TTL returns the first response.

The key is scoped by the caller's credential (hash of the API key or session cookie, or
the client address when anonymous). The same key with a different body answers 422
``idempotency.key_reused``; a key whose first request is still running answers 409. Responses
with a 5xx status are not stored, so the client may retry them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import IntegrityError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tessera.core import context
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.http.middleware import client_ip, credential_hash, error_message, header, send_json
from tessera.core.http.models import IdempotencyRecord

PENDING_STALE = dt.timedelta(minutes=5)
MAX_STORED = 1024 * 1024
KEY_REUSED = (422, "idempotency.key_reused", "this Idempotency-Key was already used with a different request")
IN_PROGRESS = (409, "idempotency.in_progress", "a request with this Idempotency-Key is still being processed")


def _record(scope: str, key: str) -> Select[Any]:
    return select(IdempotencyRecord).where(IdempotencyRecord.scope == scope, IdempotencyRecord.key == key)


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp, ttl_hours: int = 24) -> None:
        self.app = app
        self.ttl = dt.timedelta(hours=ttl_hours)

    async def _reserve(
        self, cred: str, key: str, req_hash: str, now: dt.datetime
    ) -> IdempotencyRecord | tuple[int, str, str] | None:
        """In one transaction: the finished record to replay, an error to answer, or None once
        the key is reserved for this request (a pending row; a concurrent insert of the same key
        fails the commit with IntegrityError)."""
        async with unit_of_work(platform=True) as s:
            rec: IdempotencyRecord | None = (await s.execute(_record(cred, key))).scalar_one_or_none()
            if rec is not None and rec.expires_at <= now:
                await s.delete(rec)
                await s.flush()
                rec = None
            if rec is not None:
                if rec.request_hash != req_hash:
                    return KEY_REUSED
                if rec.state == "done" and rec.status_code is not None:
                    return rec
                if now - rec.created_at < PENDING_STALE:
                    return IN_PROGRESS
                await s.delete(rec)  # a pending row whose request died: let this one run
                await s.flush()
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
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        key = (
            header(scope, b"idempotency-key")
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if not key:
            await self.app(scope, receive, send)
            return
        rid = context.current_request().request_id
        if len(key) > 255:
            await send_json(
                send,
                422,
                error_message(
                    "idempotency.invalid_key", "Idempotency-Key must be at most 255 characters", rid
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

        try:
            reserved = await self._reserve(cred, key, req_hash, now)
        except IntegrityError:  # another request reserved the key between our read and insert
            reserved = IN_PROGRESS
        if isinstance(reserved, IdempotencyRecord):
            await send(
                {
                    "type": "http.response.start",
                    "status": reserved.status_code,
                    "headers": [
                        (b"content-type", (reserved.content_type or "application/json").encode()),
                        (b"idempotent-replayed", b"true"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": reserved.body or b""})
            return
        if reserved is not None:
            status_code, code, text = reserved
            await send_json(send, status_code, error_message(code, text, rid))
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
                    rec = (await s.execute(_record(cred, key))).scalar_one()
                    rec.state = "done"
                    rec.status_code = status
                    rec.content_type = content_type
                    rec.body = stored
