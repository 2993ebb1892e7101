"""Tenant settings (tenant admins) and tenant administration (platform operators)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from tessera.core import context
from tessera.core.access.principal import OperatorPrincipal, Principal
from tessera.core.db.session import unit_of_work
from tessera.core.http.deps import DbSession, forget_tenant_status, require, require_operator
from tessera.core.http.errors import COMMON_ERRORS, error_responses
from tessera.core.tenancy import service
from tessera.core.tenancy.schemas import TenantCreate, TenantOut, TenantSettings

router = APIRouter(prefix="/v1", responses=COMMON_ERRORS)
Operator = Annotated[OperatorPrincipal, Depends(require_operator)]


@router.get("/tenant", tags=["tenant"], response_model=TenantOut)
async def get_own_tenant(
    principal: Annotated[Principal, Depends(require())], session: DbSession
) -> TenantOut:
    return TenantOut.model_validate(await service.get_tenant(session, principal.tenant_id))


@router.patch("/tenant", tags=["tenant"], response_model=TenantOut)
async def update_own_tenant(
    body: TenantSettings,
    principal: Annotated[Principal, Depends(require("admin:settings"))],
    session: DbSession,
) -> TenantOut:
    """Change the tenant's name, locale, time zone, currency or default phone region."""
    return TenantOut.model_validate(await service.update_settings(session, principal.tenant_id, body))


@router.get("/operator/tenants", tags=["operator"], response_model=list[TenantOut])
async def list_tenants(op: Operator) -> list[TenantOut]:
    async with unit_of_work(platform=True) as s:
        return [TenantOut.model_validate(t) for t in await service.list_tenants(s)]


@router.post(
    "/operator/tenants",
    tags=["operator"],
    response_model=TenantOut,
    status_code=201,
    responses=error_responses(409),
)
async def create_tenant(body: TenantCreate, op: Operator) -> TenantOut:
    """Create a tenant with its keys, built-in roles and (optionally) an owner user."""
    async with unit_of_work(platform=True) as s:
        tenant, _owner = await service.create_tenant(s, body)
        out = TenantOut.model_validate(tenant)
    context.bind(None, op.actor)
    return out


@router.get(
    "/operator/tenants/{tenant_id}",
    tags=["operator"],
    response_model=TenantOut,
    responses=error_responses(404),
)
async def get_tenant(tenant_id: uuid.UUID, op: Operator) -> TenantOut:
    async with unit_of_work(platform=True) as s:
        return TenantOut.model_validate(await service.get_tenant(s, tenant_id))


async def _set_status(tenant_id: uuid.UUID, status: str) -> TenantOut:
    async with unit_of_work(platform=True) as s:
        tenant = await service.set_status(s, tenant_id, status)
        out = TenantOut.model_validate(tenant)
    forget_tenant_status(tenant_id)
    return out


@router.post(
    "/operator/tenants/{tenant_id}/suspend",
    tags=["operator"],
    response_model=TenantOut,
    responses=error_responses(404),
)
async def suspend_tenant(tenant_id: uuid.UUID, op: Operator) -> TenantOut:
    """Suspend: the tenant's users and keys get 403 `tenant.suspended` until resumed."""
    return await _set_status(tenant_id, "suspended")


@router.post(
    "/operator/tenants/{tenant_id}/resume",
    tags=["operator"],
    response_model=TenantOut,
    responses=error_responses(404),
)
async def resume_tenant(tenant_id: uuid.UUID, op: Operator) -> TenantOut:
    return await _set_status(tenant_id, "active")
