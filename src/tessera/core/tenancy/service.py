"""Tenant lifecycle: creation (keys, roles, audit chain, owner), settings, suspension."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.audit import service as audit
from tessera.core.crypto.keyring import get_keyring
from tessera.core.db.base import utcnow, uuid7
from tessera.core.db.session import switch_tenant
from tessera.core.identity import service as identity
from tessera.core.identity.models import User
from tessera.core.identity.schemas import UserCreate
from tessera.core.tenancy.errors import DuplicateSlug, TenantNotFound
from tessera.core.tenancy.models import Tenant
from tessera.core.tenancy.schemas import TenantCreate, TenantSettings

# Hooks run inside the new tenant's scope at creation (subscription assigns a plan, …).
on_tenant_created: list = []  # type: ignore[type-arg]


def _snapshot(t: Tenant) -> dict[str, object]:
    return {
        "name": t.name,
        "slug": t.slug,
        "locale": t.locale,
        "timezone": t.timezone,
        "currency": t.currency,
        "status": t.status,
        "default_region": t.default_region,
    }


async def get_tenant(session: AsyncSession, tenant_id: uuid.UUID) -> Tenant:
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None:
        raise TenantNotFound()
    return tenant


async def get_by_slug(session: AsyncSession, slug: str) -> Tenant | None:
    return (await session.execute(select(Tenant).where(Tenant.slug == slug))).scalar_one_or_none()


async def list_tenants(session: AsyncSession) -> list[Tenant]:
    return list((await session.execute(select(Tenant).order_by(Tenant.created_at))).scalars())


async def create_tenant(session: AsyncSession, data: TenantCreate) -> tuple[Tenant, User | None]:
    """Create a tenant with its keys, built-in roles, audit chain and optional owner.

    Leaves the new tenant in scope for the rest of the transaction.
    """
    if await get_by_slug(session, data.slug):
        raise DuplicateSlug(field="slug")
    tenant = Tenant(
        id=uuid7(),
        name=data.name,
        slug=data.slug,
        locale=data.locale or "en",
        timezone=data.timezone or "UTC",
        currency=data.currency or "USD",
        default_region=data.default_region or "CN",
        status="active",
    )
    session.add(tenant)
    await session.flush()
    actor = context.current_actor()
    await switch_tenant(session, tenant.id)
    context.bind(tenant.id, actor)
    for row in get_keyring().new_tenant_keys(tenant.id):
        session.add(row)
    await session.flush()
    await audit.ensure_head(session)
    roles = await identity.seed_builtin_roles(session)
    await audit.record(session, "tenant.create", "tenant", tenant.id, after=_snapshot(tenant))
    for hook in on_tenant_created:
        await hook(session, tenant)
    owner = None
    if data.owner_email:
        owner = await identity.create_user(
            session,
            UserCreate(
                email=data.owner_email,
                name=data.owner_name or data.owner_email.split("@")[0],
                role_id=roles["owner"].id,
                password=data.owner_password,
            ),
            region=tenant.default_region,
        )
    return tenant, owner


async def update_settings(session: AsyncSession, tenant_id: uuid.UUID, data: TenantSettings) -> Tenant:
    tenant = await get_tenant(session, tenant_id)
    before = _snapshot(tenant)
    for k, v in data.model_dump(exclude_unset=True, exclude_none=True).items():
        setattr(tenant, k, v)
    await session.flush()
    await audit.record(session, "tenant.update", "tenant", tenant.id, before=before, after=_snapshot(tenant))
    return tenant


async def set_status(session: AsyncSession, tenant_id: uuid.UUID, status: str) -> Tenant:
    """Suspend or resume a tenant (operator). The audit row goes into the tenant's own chain."""
    tenant = await get_tenant(session, tenant_id)
    before = _snapshot(tenant)
    tenant.status = status
    tenant.suspended_at = utcnow() if status == "suspended" else None
    await session.flush()
    actor = context.current_actor()
    await switch_tenant(session, tenant.id)
    context.bind(tenant.id, actor)
    await audit.record(
        session,
        f"tenant.{'suspend' if status == 'suspended' else 'resume'}",
        "tenant",
        tenant.id,
        before=before,
        after=_snapshot(tenant),
    )
    return tenant
