"""The audit log: append-only, hash-chained per tenant, written in the caller's transaction.

Each row's ``hash`` is SHA-256 over its canonical content and the previous row's hash; the
per-tenant :class:`AuditHead` row is locked while appending, so concurrent writers form one
chain. There is deliberately no update or delete function here, and on PostgreSQL the
application role has no UPDATE or DELETE grant on ``audit_log``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.access.masking import mask_address, mask_email, mask_id_number, mask_phone
from tessera.core.audit.models import AuditEvent, AuditHead
from tessera.core.db.base import utcnow, uuid7

GENESIS = "0" * 64
_SECRET_MARKERS = ("password", "secret", "token", "totp", "recovery")


def _mask_value(key: str, value: Any) -> Any:
    if value is None or not isinstance(value, str):
        return value
    k = key.lower()
    if any(m in k for m in _SECRET_MARKERS):
        return "[redacted]"
    if "phone" in k or k == "mobile":
        return mask_phone(value)
    if "email" in k:
        return mask_email(value)
    if "address" in k:
        return mask_address(value)
    if "id_number" in k:
        return mask_id_number(value)
    return value


def diff(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> dict[str, Any]:
    """Changed fields as ``{field: [before, after]}``, personal data masked, secrets redacted."""
    before = before or {}
    after = after or {}
    out: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if b != a:
            out[key] = [_mask_value(key, _jsonable(b)), _mask_value(key, _jsonable(a))]
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dt.datetime):
        return v.isoformat()
    return v


def _digest(prev_hash: str, row: Mapping[str, Any]) -> str:
    payload = orjson.dumps(row, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev_hash.encode() + payload).hexdigest()


def _canonical(ev: AuditEvent) -> dict[str, Any]:
    return {
        "tenant_id": str(ev.tenant_id),
        "seq": ev.seq,
        "created_at": ev.created_at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_type": ev.actor_type,
        "actor_id": str(ev.actor_id) if ev.actor_id else None,
        "actor_label": ev.actor_label,
        "action": ev.action,
        "object_type": ev.object_type,
        "object_id": ev.object_id,
        "changes": ev.changes,
        "ip": ev.ip,
        "user_agent": ev.user_agent,
        "request_id": ev.request_id,
    }


async def ensure_head(session: AsyncSession) -> None:
    """Create the tenant's chain head (called when a tenant is created)."""
    session.add(AuditHead(seq=0, hash=GENESIS))
    await session.flush()


async def record(
    session: AsyncSession,
    action: str,
    object_type: str,
    object_id: uuid.UUID | str | None = None,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    changes: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit row for the tenant in scope, in the caller's transaction."""
    actor = context.current_actor()
    req = context.current_request()
    head = (await session.execute(select(AuditHead).with_for_update())).scalar_one_or_none()
    if head is None:
        head = AuditHead(seq=0, hash=GENESIS)
        session.add(head)
        await session.flush()
    body = dict(changes) if changes is not None else diff(before, after)
    ev = AuditEvent(
        id=uuid7(),
        tenant_id=context.current_tenant_id(),
        seq=head.seq + 1,
        created_at=utcnow(),
        actor_type=actor.kind,
        actor_id=actor.id,
        actor_label=actor.label,
        action=action,
        object_type=object_type,
        object_id=str(object_id) if object_id is not None else None,
        changes=body,
        ip=req.ip,
        user_agent=(req.user_agent or "")[:400] or None,
        request_id=req.request_id or None,
        prev_hash=head.hash,
        hash="",
    )
    ev.hash = _digest(head.hash, _canonical(ev))
    head.seq = ev.seq
    head.hash = ev.hash
    session.add(ev)
    await session.flush()
    return ev


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


async def iter_chain(session: AsyncSession, batch: int = 1000) -> AsyncIterator[AuditEvent]:
    last = 0
    while True:
        rows = (
            (
                await session.execute(
                    select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
                )
            )
            .scalars()
            .all()
        )
        if not rows:
            return
        for r in rows:
            yield r
        last = rows[-1].seq


async def verify(session: AsyncSession) -> VerifyResult:
    """Recompute the tenant's chain; report the first row that does not match."""
    prev = GENESIS
    expected_seq = 1
    checked = 0
    async for ev in iter_chain(session):
        if ev.seq != expected_seq:
            return VerifyResult(False, checked, ev.seq, f"gap: expected seq {expected_seq}")
        if ev.prev_hash != prev or _digest(prev, _canonical(ev)) != ev.hash:
            return VerifyResult(False, checked, ev.seq, "hash mismatch")
        prev = ev.hash
        expected_seq += 1
        checked += 1
    head = (await session.execute(select(AuditHead))).scalar_one_or_none()
    if head is not None and (head.seq != checked or (checked and head.hash != prev)):
        return VerifyResult(False, checked, head.seq, "chain head does not match the last row")
    return VerifyResult(True, checked)
