"""Tenant exports (tenant admins); backups and tenant deletion (operators)."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from tessera.core.access.principal import OperatorPrincipal, Principal
from tessera.core.audit import service as audit
from tessera.core.backup import service
from tessera.core.backup.models import TenantDeletion, TenantExport
from tessera.core.db.session import unit_of_work
from tessera.core.http.deps import DbSession, forget_tenant_status, require, require_operator
from tessera.core.http.errors import COMMON_ERRORS, NotFound, error_responses
from tessera.settings import Settings, get_settings

router = APIRouter(prefix="/v1", responses=COMMON_ERRORS)
Operator = Annotated[OperatorPrincipal, Depends(require_operator)]
SettingsAdmin = Annotated[Principal, Depends(require("admin:settings"))]
R404 = error_responses(404)


class ExportNotFound(NotFound):
    """Export not found."""

    code = "export.not_found"


class ExportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    status: str
    requested_by: str
    size: int | None
    row_counts: dict[str, Any]
    created_at: dt.datetime
    finished_at: dt.datetime | None


class DeletionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_days: int = Field(default=service.DELETION_GRACE_DAYS, ge=0, le=365)
    reason: str = Field(default="", max_length=1000)


class DeletionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    tenant_id: uuid.UUID
    tenant_slug: str
    requested_by: str
    reason: str
    delete_after: dt.datetime
    status: str
    completed_at: dt.datetime | None
    row_counts: dict[str, Any]


def _settings(request: Request) -> Settings:
    return getattr(request.app.state, "settings", None) or get_settings()


async def _get_export(session: Any, export_id: uuid.UUID) -> TenantExport:
    exp = (
        await session.execute(select(TenantExport).where(TenantExport.id == export_id))
    ).scalar_one_or_none()
    if exp is None:
        raise ExportNotFound()
    return exp  # type: ignore[no-any-return]


@router.post("/exports", tags=["tenant"], response_model=ExportOut, status_code=202)
async def request_export(principal: SettingsAdmin, session: DbSession, request: Request) -> ExportOut:
    """Export every row of the tenant (JSON lines per table in a zip, personal data decrypted)."""
    exp = TenantExport(status="pending", requested_by=principal.actor.label or str(principal.actor.id))
    session.add(exp)
    await session.flush()
    await audit.record(session, "tenant.export", "tenant_export", exp.id)
    from tessera.core.backup import tasks

    if tasks.JOBS:
        from tessera.core.jobs.service import enqueue

        await enqueue(
            session, "tenant.export", {"export_id": str(exp.id)}, idempotency_key=f"export:{exp.id}"
        )
    else:
        await service.run_export(session, _settings(request), exp.id)
    return ExportOut.model_validate(exp)


@router.get("/exports/{export_id}", tags=["tenant"], response_model=ExportOut, responses=R404)
async def get_export(export_id: uuid.UUID, principal: SettingsAdmin, session: DbSession) -> ExportOut:
    return ExportOut.model_validate(await _get_export(session, export_id))


@router.get("/exports/{export_id}/download", tags=["tenant"], response_class=FileResponse, responses=R404)
async def download_export(
    export_id: uuid.UUID, principal: SettingsAdmin, session: DbSession, request: Request
) -> FileResponse:
    exp = await _get_export(session, export_id)
    if exp.status != "done" or not exp.file_name:
        raise ExportNotFound("the export is not ready yet")
    path = service.exports_dir(_settings(request), exp.tenant_id) / exp.file_name
    if not path.exists():
        raise ExportNotFound("the export file is gone")
    return FileResponse(path, media_type="application/zip", filename=f"tessera-export-{exp.id}.zip")


@router.get("/operator/backups", tags=["operator"])
async def list_backups(op: Operator, request: Request) -> list[dict[str, Any]]:
    """Manifests of the backups in the data directory, oldest first."""
    return await asyncio.to_thread(service.list_backups, _settings(request))


@router.post("/operator/backups", tags=["operator"], status_code=201)
async def create_backup(op: Operator, request: Request) -> dict[str, Any]:
    settings = _settings(request)
    path = await asyncio.to_thread(service.create_backup, settings)
    return next(b for b in service.list_backups(settings) if b["name"] == path.name)


@router.post(
    "/operator/tenants/{tenant_id}/deletion",
    tags=["operator"],
    response_model=DeletionOut,
    status_code=201,
    responses=error_responses(404, 409),
)
async def schedule_deletion(tenant_id: uuid.UUID, body: DeletionIn, op: Operator) -> DeletionOut:
    """Terminate the tenant now and delete all its data after ``grace_days``."""
    async with unit_of_work(platform=True) as s:
        d = await service.schedule_deletion(
            s, tenant_id, grace_days=body.grace_days, reason=body.reason, requested_by=op.email
        )
        out = DeletionOut.model_validate(d)
    forget_tenant_status(tenant_id)
    return out


@router.delete(
    "/operator/tenants/{tenant_id}/deletion", tags=["operator"], response_model=DeletionOut, responses=R404
)
async def cancel_deletion(tenant_id: uuid.UUID, op: Operator) -> DeletionOut:
    async with unit_of_work(platform=True) as s:
        out = DeletionOut.model_validate(await service.cancel_deletion(s, tenant_id, op.email))
    forget_tenant_status(tenant_id)
    return out


@router.get("/operator/tenant-deletions", tags=["operator"], response_model=list[DeletionOut])
async def list_deletions(op: Operator) -> list[DeletionOut]:
    async with unit_of_work(platform=True) as s:
        rows = (await s.execute(select(TenantDeletion).order_by(TenantDeletion.created_at.desc()))).scalars()
        return [DeletionOut.model_validate(d) for d in rows]
