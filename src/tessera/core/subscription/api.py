"""Subscription and usage (tenant admins), plan catalogue and assignment (operators)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.access.principal import OperatorPrincipal, Principal
from tessera.core.db.session import unit_of_work
from tessera.core.http.deps import DbSession, require, require_operator
from tessera.core.http.errors import COMMON_ERRORS, InvalidInput, error_responses
from tessera.core.subscription import service
from tessera.core.subscription.schemas import (
    AddOnIn,
    AddOnOut,
    AssignPlan,
    DailyUsage,
    MeterUsage,
    PlanIn,
    PlanOut,
    PlanPatch,
    SubscriptionOut,
    UsageOut,
)
from tessera.core.tenancy import service as tenancy

router = APIRouter(prefix="/v1", responses=COMMON_ERRORS)
Operator = Annotated[OperatorPrincipal, Depends(require_operator)]
SubscriptionAdmin = Annotated[Principal, Depends(require("admin:subscription"))]
R404 = error_responses(404)


def require_module(module: str, *permissions: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency factory: authenticate, require ``permissions``, and refuse with 403
    ``subscription.module_not_included`` when the tenant's subscription lacks ``module``.

    ``Annotated[Principal, Depends(require_module("marketing", "marketing:write"))]``
    """
    authenticate = require(*permissions)

    async def dependency(
        session: DbSession,
        principal: Principal = Depends(authenticate),
    ) -> Principal:
        await service.check_module(session, module)
        return principal

    return dependency


async def _subscription_out(session: AsyncSession) -> SubscriptionOut:
    ent = await service.effective_entitlements(session)
    sub = await service.get_subscription(session)
    addons = await _addons(session)
    return SubscriptionOut(
        plan=PlanOut.model_validate(sub[1]) if sub else None,
        status=sub[0].status if sub else None,
        period_start=ent.period_start,
        period_end=ent.period_end,
        modules=sorted(ent.modules),
        seats=ent.seats,
        addons=addons,
        entitlements=[MeterUsage(**t) for t in await service.current_totals(session, ent)],
    )


async def _addons(session: AsyncSession) -> list[AddOnOut]:
    from sqlalchemy import select

    from tessera.core.subscription.models import SubscriptionAddOn

    rows = (await session.execute(select(SubscriptionAddOn).order_by(SubscriptionAddOn.created_at))).scalars()
    return [AddOnOut.model_validate(a) for a in rows]


@router.get("/subscription", tags=["subscription"], response_model=SubscriptionOut)
async def get_subscription(principal: SubscriptionAdmin, session: DbSession) -> SubscriptionOut:
    """The tenant's plan, add-ons, and per-meter allowance, use and reset time."""
    return await _subscription_out(session)


@router.get("/usage", tags=["subscription"], response_model=UsageOut)
async def get_usage(
    principal: SubscriptionAdmin,
    session: DbSession,
    meter: str | None = None,
    period: Annotated[str, Query(pattern=r"^(current|previous|-\d{1,3}|0)$")] = "current",
) -> UsageOut:
    """Usage per meter per day. ``period``: ``current``, ``previous`` or ``-N`` (N periods ago)."""
    offset = {"current": 0, "previous": -1}.get(period)
    if offset is None:
        offset = int(period)
    _ent, start, end, rows = await service.usage_by_day(session, meter, offset)
    return UsageOut(period_start=start, period_end=end, days=[DailyUsage(**r) for r in rows])


# --- operators ------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def tenant_unit(tenant_id: uuid.UUID, op: OperatorPrincipal) -> AsyncIterator[AsyncSession]:
    """A unit of work inside ``tenant_id`` for an operator (404 when the tenant does not exist)."""
    async with unit_of_work(platform=True) as s:
        await tenancy.get_tenant(s, tenant_id)
    with context.tenant_scope(tenant_id, op.actor):
        async with unit_of_work() as s:
            yield s


@router.get("/operator/plans", tags=["operator"], response_model=list[PlanOut])
async def list_plans(op: Operator, key: str | None = None) -> list[PlanOut]:
    async with unit_of_work(platform=True) as s:
        return [PlanOut.model_validate(p) for p in await service.list_plans(s, key)]


@router.post("/operator/plans", tags=["operator"], response_model=PlanOut, status_code=201)
async def create_plan(body: PlanIn, op: Operator) -> PlanOut:
    """Create a plan, or the next version of ``key`` (existing subscribers keep theirs)."""
    async with unit_of_work(platform=True) as s:
        return PlanOut.model_validate(await service.create_plan_version(s, body.model_dump()))


@router.post("/operator/plans/defaults", tags=["operator"], response_model=list[PlanOut])
async def seed_default_plans(op: Operator) -> list[PlanOut]:
    """Create the starter/professional/enterprise catalogue where missing."""
    async with unit_of_work(platform=True) as s:
        await service.ensure_default_catalogue(s)
        return [PlanOut.model_validate(p) for p in await service.list_plans(s)]


@router.get("/operator/plans/{plan_id}", tags=["operator"], response_model=PlanOut, responses=R404)
async def get_plan(plan_id: uuid.UUID, op: Operator) -> PlanOut:
    async with unit_of_work(platform=True) as s:
        return PlanOut.model_validate(await service.get_plan(s, plan_id))


@router.patch("/operator/plans/{plan_id}", tags=["operator"], response_model=PlanOut, responses=R404)
async def update_plan(plan_id: uuid.UUID, body: PlanPatch, op: Operator) -> PlanOut:
    """Rename or (de)activate a version; terms change only through a new version."""
    async with unit_of_work(platform=True) as s:
        return PlanOut.model_validate(await service.update_plan(s, plan_id, body.name, body.active))


@router.delete(
    "/operator/plans/{plan_id}", tags=["operator"], status_code=204, responses=error_responses(404, 409)
)
async def delete_plan(plan_id: uuid.UUID, op: Operator) -> None:
    async with unit_of_work(platform=True) as s:
        await service.delete_plan(s, plan_id)


@router.get(
    "/operator/tenants/{tenant_id}/subscription",
    tags=["operator"],
    response_model=SubscriptionOut,
    responses=R404,
)
async def get_tenant_subscription(tenant_id: uuid.UUID, op: Operator) -> SubscriptionOut:
    async with tenant_unit(tenant_id, op) as s:
        return await _subscription_out(s)


@router.put(
    "/operator/tenants/{tenant_id}/subscription",
    tags=["operator"],
    response_model=SubscriptionOut,
    responses=R404,
)
async def assign_plan(tenant_id: uuid.UUID, body: AssignPlan, op: Operator) -> SubscriptionOut:
    """Subscribe the tenant to a plan (latest active version unless ``version`` is given)."""
    async with tenant_unit(tenant_id, op) as s:
        plan = await service.latest_plan(s, body.plan_key, body.version)
        await service.assign_plan(s, plan, period_start=body.period_start, status=body.status)
        return await _subscription_out(s)


@router.post(
    "/operator/tenants/{tenant_id}/addons",
    tags=["operator"],
    response_model=AddOnOut,
    status_code=201,
    responses=R404,
)
async def add_addon(tenant_id: uuid.UUID, body: AddOnIn, op: Operator) -> AddOnOut:
    """Add a module (``module``) or extra allowance (``meter`` + ``amount``; ``seats`` too)."""
    if body.meter is not None and body.amount <= 0:
        raise InvalidInput("must be greater than 0 for a meter add-on", field="amount")
    async with tenant_unit(tenant_id, op) as s:
        return AddOnOut.model_validate(
            await service.add_addon(s, module=body.module, meter=body.meter, amount=body.amount)
        )


@router.delete(
    "/operator/tenants/{tenant_id}/addons/{addon_id}", tags=["operator"], status_code=204, responses=R404
)
async def remove_addon(tenant_id: uuid.UUID, addon_id: uuid.UUID, op: Operator) -> None:
    async with tenant_unit(tenant_id, op) as s:
        await service.remove_addon(s, addon_id)
