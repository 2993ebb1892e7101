"""Audit search, detail, CSV export and chain verification. There is no write endpoint."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy import select

from tessera.core.access.principal import Principal
from tessera.core.audit import service
from tessera.core.audit.models import AuditEvent
from tessera.core.http.deps import DbSession, require
from tessera.core.http.errors import COMMON_ERRORS, NotFound, error_responses
from tessera.core.http.listing import FilterField, FilterSet, ListQuery, Page, apply_listing, page_of

router = APIRouter(prefix="/v1", tags=["audit"], responses=COMMON_ERRORS)
Auditor = Annotated[Principal, Depends(require("audit:read"))]

AUDIT_FILTERS = FilterSet(
    fields={
        "action": FilterField(AuditEvent.action, operators=("eq", "in", "contains")),
        "object_type": FilterField(AuditEvent.object_type),
        "object_id": FilterField(AuditEvent.object_id),
        "actor_type": FilterField(AuditEvent.actor_type),
        "actor_id": FilterField(AuditEvent.actor_id, kind=uuid.UUID),
        "created_at": FilterField(AuditEvent.created_at, kind=dt.datetime, operators=("gte", "lte")),
    },
    sortable={"seq": AuditEvent.seq, "created_at": AuditEvent.created_at},
    default_sort="-seq",
    id_column=AuditEvent.id,
)


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    seq: int
    created_at: dt.datetime
    actor_type: str
    actor_id: uuid.UUID | None
    actor_label: str
    action: str
    object_type: str
    object_id: str | None
    changes: dict[str, Any]
    ip: str | None
    user_agent: str | None
    request_id: str | None
    hash: str


class VerifyOut(BaseModel):
    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str | None


@router.get("/audit-events", response_model=Page[AuditEventOut])
async def search(request: Request, principal: Auditor, session: DbSession) -> Page[AuditEventOut]:
    """Search: `action`, `action__contains`, `object_type`, `object_id`, `actor_type`, `actor_id`,
    `created_at__gte`, `created_at__lte`."""
    q = ListQuery.from_params(request.query_params, AUDIT_FILTERS)
    rows = (await session.execute(apply_listing(select(AuditEvent), q, AUDIT_FILTERS))).scalars().all()
    items, cursor = page_of(rows, q, AUDIT_FILTERS)
    return Page[AuditEventOut](items=[AuditEventOut.model_validate(r) for r in items], next_cursor=cursor)


@router.get(
    "/audit-events/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "CSV of matching rows"}},
)
async def export(request: Request, principal: Auditor, session: DbSession) -> StreamingResponse:
    """CSV export of the rows matching the same filters as the search (up to 100,000 rows)."""
    params = {k: v for k, v in request.query_params.items() if k not in ("cursor", "limit")}
    q = ListQuery.from_params(params, AUDIT_FILTERS)
    q.limit = 200
    rows: list[AuditEvent] = []
    while len(rows) < 100_000:
        batch = (await session.execute(apply_listing(select(AuditEvent), q, AUDIT_FILTERS))).scalars().all()
        items, cursor = page_of(batch, q, AUDIT_FILTERS)
        rows.extend(items)
        if cursor is None:
            break
        q.cursor = cursor
    cols = [
        "seq",
        "created_at",
        "actor_type",
        "actor_id",
        "actor_label",
        "action",
        "object_type",
        "object_id",
        "changes",
        "ip",
        "user_agent",
        "request_id",
        "hash",
    ]

    async def gen() -> AsyncIterator[str]:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(cols)
        for r in rows:
            w.writerow(
                [
                    r.seq,
                    r.created_at.isoformat(),
                    r.actor_type,
                    r.actor_id or "",
                    r.actor_label,
                    r.action,
                    r.object_type,
                    r.object_id or "",
                    orjson.dumps(r.changes).decode(),
                    r.ip or "",
                    r.user_agent or "",
                    r.request_id or "",
                    r.hash,
                ]
            )
            if buf.tell() > 65536:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()

    return StreamingResponse(
        gen(), media_type="text/csv", headers={"content-disposition": 'attachment; filename="audit.csv"'}
    )


@router.get("/audit-events/verify", response_model=VerifyOut)
async def verify(principal: Auditor, session: DbSession) -> VerifyOut:
    """Recompute the tenant's hash chain and report the first row that was tampered with."""
    r = await service.verify(session)
    return VerifyOut(ok=r.ok, checked=r.checked, first_bad_seq=r.first_bad_seq, reason=r.reason)


@router.get("/audit-events/{event_id}", response_model=AuditEventOut, responses=error_responses(404))
async def detail(event_id: uuid.UUID, principal: Auditor, session: DbSession) -> AuditEventOut:
    row = (await session.execute(select(AuditEvent).where(AuditEvent.id == event_id))).scalar_one_or_none()
    if row is None:
        raise NotFound()
    return AuditEventOut.model_validate(row)
