"""Entitlements and metering.

``consume`` is the one way to spend an allowance. It runs in the caller's transaction, so a
rolled-back send also rolls back its usage; the usage record is unique on (tenant, meter, ref),
so a retried job or replayed request counts once; and the per-period counter is advanced with
``UPDATE … SET used = used + n WHERE used + n <= limit``, which the database applies atomically
(row lock on PostgreSQL, the single writer on SQLite), so concurrent consumers cannot overspend.
On PostgreSQL the record's insert is a data-modifying CTE of that UPDATE: one round trip.

The counter's row stays locked until the transaction ends and every consumer of the tenant's
meter waits for it: callers make ``consume`` the last statement of their transaction (the send
pipeline does), so the lock is held for the commit only. A refused ``consume`` leaves nothing
behind; a request that does not handle the error rolls back everything it wrote.
"""

from __future__ import annotations

import calendar
import datetime as dt
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.audit import service as audit
from tessera.core.db.base import table_of, utcnow, uuid7
from tessera.core.db.session import after_commit
from tessera.core.subscription.errors import (
    AddOnNotFound,
    ModuleNotIncluded,
    PlanInUse,
    PlanNotFound,
    QuotaExceeded,
    UnknownMeter,
)
from tessera.core.subscription.models import (
    Plan,
    Subscription,
    SubscriptionAddOn,
    UsageCounter,
    UsageRecord,
)

METERS = (
    "messages.sms",
    "messages.email",
    "messages.wechat",
    "messages.voice",
    "ai.articles",
    "storage.bytes",
    "contacts",
    "seats",
)
# Stock meters measure what exists, not what was done this period: they never reset and
# accept negative amounts (a deleted contact gives its allowance back).
STOCK_METERS = frozenset({"storage.bytes", "contacts"})
# Seats are counted from the users table by the seat hook, never consumed.
COUNTED_METERS = frozenset({"seats"})
STOCK_PERIOD = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

MODULES = (
    "contacts",
    "connect",
    "marketing",
    "sales",
    "service",
    "field",
    "loyalty",
    "studio",
    "sites",
    "content",
    "insights",
    "ads",
    "monitor",
)

GB = 1024**3
DEFAULT_CATALOGUE: list[dict[str, Any]] = [
    {
        "key": "starter",
        "name": "Starter",
        "seats": 5,
        "price_minor": 99_00,
        "modules": ["contacts", "connect", "service"],
        "quotas": {
            "messages.sms": 1_000,
            "messages.email": 5_000,
            "messages.wechat": 1_000,
            "messages.voice": 100,
            "ai.articles": 20,
            "storage.bytes": 1 * GB,
            "contacts": 5_000,
        },
    },
    {
        "key": "professional",
        "name": "Professional",
        "seats": 25,
        "price_minor": 499_00,
        "modules": [
            "contacts",
            "connect",
            "service",
            "marketing",
            "sales",
            "field",
            "loyalty",
            "sites",
            "content",
            "insights",
        ],
        "quotas": {
            "messages.sms": 50_000,
            "messages.email": 200_000,
            "messages.wechat": 50_000,
            "messages.voice": 5_000,
            "ai.articles": 500,
            "storage.bytes": 50 * GB,
            "contacts": 200_000,
        },
    },
    {
        "key": "enterprise",
        "name": "Enterprise",
        "seats": 500,
        "price_minor": 2999_00,
        "modules": list(MODULES),
        "quotas": {
            "messages.sms": 2_000_000,
            "messages.email": 10_000_000,
            "messages.wechat": 2_000_000,
            "messages.voice": 200_000,
            "ai.articles": 10_000,
            "storage.bytes": 2_000 * GB,
            "contacts": 10_000_000,
        },
    },
]


def default_plan_key() -> str:
    """The plan new tenants get (``TESSERA_SUBSCRIPTION_DEFAULT_PLAN``, default professional)."""
    return os.environ.get("TESSERA_SUBSCRIPTION_DEFAULT_PLAN", "professional")


# --- periods --------------------------------------------------------------------------------


def _add_months(d: dt.datetime, months: int) -> dt.datetime:
    y, m = divmod(d.month - 1 + months, 12)
    year, month = d.year + y, m + 1
    day = min(d.day, calendar.monthrange(year, month)[1])
    return d.replace(year=year, month=month, day=day)


def period_bounds(anchor: dt.datetime, now: dt.datetime, offset: int = 0) -> tuple[dt.datetime, dt.datetime]:
    """The monthly period containing ``now`` (``offset=-1``: the one before), anchored at ``anchor``."""
    months = (now.year - anchor.year) * 12 + (now.month - anchor.month)
    start = _add_months(anchor, months)
    if start > now:
        months -= 1
        start = _add_months(anchor, months)
    start = _add_months(anchor, months + offset)
    return start, _add_months(anchor, months + offset + 1)


# --- entitlements ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Entitlements:
    plan_key: str | None
    plan_version: int | None
    modules: frozenset[str]
    seats: int | None
    quotas: dict[str, int | None]
    period_start: dt.datetime
    period_end: dt.datetime
    addons: list[dict[str, Any]] = field(default_factory=list)

    def limit(self, meter: str) -> int | None:
        return self.quotas.get(meter)


@dataclass(frozen=True)
class Usage:
    meter: str
    used: int
    limit: int | None
    period_start: dt.datetime | None
    reset_at: dt.datetime | None
    counted: bool  # False when this ref had already been counted

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)


_CACHE_KEY = "subscription.entitlements"
# Entitlements change rarely and are read on every metered call: keep them for a few seconds
# per process. Changes made in this process invalidate at once; other processes see them
# within ENTITLEMENTS_TTL seconds.
ENTITLEMENTS_TTL = 5.0
_process_cache: dict[uuid.UUID, tuple[float, Entitlements]] = {}


async def get_subscription(session: AsyncSession) -> tuple[Subscription, Plan] | None:
    row = (
        await session.execute(select(Subscription, Plan).join(Plan, Plan.id == Subscription.plan_id))
    ).first()
    return (row[0], row[1]) if row else None


async def effective_entitlements(session: AsyncSession, now: dt.datetime | None = None) -> Entitlements:
    """Plan plus add-ons for the tenant in scope. A tenant with no subscription is unlimited
    (an installation that never configured billing)."""
    tid = context.current_tenant_id()
    cacheable = now is None
    cached = session.info.get(_CACHE_KEY)
    if cacheable and cached is not None and cached[0] == tid:
        return cached[1]  # type: ignore[no-any-return]
    if cacheable:
        hit = _process_cache.get(tid)
        if hit is not None and time.monotonic() - hit[0] < ENTITLEMENTS_TTL and utcnow() < hit[1].period_end:
            session.info[_CACHE_KEY] = (tid, hit[1])
            return hit[1]
    now = now or utcnow()
    sub = await get_subscription(session)
    addons = list(
        (await session.execute(select(SubscriptionAddOn).order_by(SubscriptionAddOn.created_at))).scalars()
    )
    if sub is None or sub[0].status != "active":
        start, end = period_bounds(STOCK_PERIOD, now)
        ent = Entitlements(None, None, frozenset(MODULES), None, {}, start, end)
    else:
        s, plan = sub
        quotas: dict[str, int | None] = {m: None for m in METERS}
        for meter, amount in (plan.quotas or {}).items():
            quotas[meter] = int(amount) if amount is not None else None
        modules = set(plan.modules or [])
        seats = plan.seats
        for a in addons:
            if a.module:
                modules.add(a.module)
            if a.meter == "seats":
                seats = None if seats is None else seats + a.amount
            elif a.meter and quotas.get(a.meter) is not None:
                quotas[a.meter] = int(quotas[a.meter] or 0) + a.amount
        quotas["seats"] = seats
        start, end = period_bounds(s.period_start, now)
        ent = Entitlements(
            plan.key,
            plan.version,
            frozenset(modules),
            seats,
            quotas,
            start,
            end,
            [{"id": str(a.id), "module": a.module, "meter": a.meter, "amount": a.amount} for a in addons],
        )
    if cacheable:
        session.info[_CACHE_KEY] = (tid, ent)
        _process_cache[tid] = (time.monotonic(), ent)
    return ent


def forget_entitlements(session: AsyncSession | None = None, tenant_id: uuid.UUID | None = None) -> None:
    """Drop cached entitlements (of one session's tenant, or all with no arguments)."""
    if session is not None:
        session.info.pop(_CACHE_KEY, None)
    tid = tenant_id or context.current_tenant_id_or_none()
    if session is None and tenant_id is None:
        _process_cache.clear()
    elif tid is not None:
        _process_cache.pop(tid, None)
        if session is not None:  # and again once the change is visible to everyone
            after_commit(session, lambda: _process_cache.pop(tid, None) and None)


async def check_module(session: AsyncSession, module: str) -> None:
    """Raise 403 ``subscription.module_not_included`` unless the tenant's plan or add-ons include it."""
    ent = await effective_entitlements(session)
    if module not in ent.modules:
        raise ModuleNotIncluded(
            f"the '{module}' module is not included in your subscription",
            module=module,
            plan=ent.plan_key,
        )


# --- metering -------------------------------------------------------------------------------


def _insert(session: AsyncSession) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


_PG_CONSUME: dict[bool, Any] = {}


def _pg_consume(limited: bool) -> Any:
    """The record's insert and the counter's bump as one statement, built once (with or without
    the limit): a statement object keeps its compiled form from one send to the next."""
    stmt = _PG_CONSUME.get(limited)
    if stmt is None:
        records, counters = table_of(UsageRecord), table_of(UsageCounter)

        def p(name: str, col: Any) -> Any:
            return bindparam(name, type_=col.type)

        rec = (
            pg_insert(records)
            .values(
                id=p("u_rid", records.c.id),
                tenant_id=p("u_tid", records.c.tenant_id),
                meter=p("u_meter", records.c.meter),
                ref=p("u_ref", records.c.ref),
                n=p("u_n", records.c.n),
                period_start=p("u_period", records.c.period_start),
                created_at=p("u_at", records.c.created_at),
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "meter", "ref"])
            .returning(records.c.id)
            .cte("usage_rec")
        )
        cond = [
            counters.c.meter == p("u_meter", counters.c.meter),
            counters.c.period_start == p("u_period", counters.c.period_start),
            select(rec.c.id).exists(),
        ]
        if limited:
            cond.append(counters.c.used + p("u_n", counters.c.used) <= p("u_limit", counters.c.used))
        stmt = _PG_CONSUME[limited] = (
            update(counters)
            .where(and_(*cond))
            .values(used=counters.c.used + p("u_n", counters.c.used))
            .returning(counters.c.used)
            .add_cte(rec)
        )
    return stmt


async def consume(session: AsyncSession, meter: str, n: int, *, ref: str) -> Usage:
    """Spend ``n`` of ``meter`` for the tenant in scope, once per ``ref`` (job or request id).

    Raises 402 ``subscription.quota_exceeded`` (details: meter, limit, used, remaining,
    reset_at) when the allowance would be exceeded; nothing is recorded then.
    """
    if meter not in METERS or meter in COUNTED_METERS:
        raise UnknownMeter(f"'{meter}' is not a metered resource", field="meter")
    if n < 0 and meter not in STOCK_METERS:
        raise UnknownMeter("only stock meters accept negative amounts", field="n")
    if not ref:
        raise UnknownMeter("a ref (job or request id) is required", field="ref")
    ent = await effective_entitlements(session)
    stock = meter in STOCK_METERS
    period_start = STOCK_PERIOD if stock else ent.period_start
    reset_at = None if stock else ent.period_end
    limit = ent.limit(meter)

    tid = context.current_tenant_id()
    record_id = uuid7()
    created_at = utcnow()
    limited = limit is not None and n > 0
    used: int | None
    if session.get_bind().dialect.name == "postgresql":
        # One round trip: the record is a data-modifying CTE of the counter's UPDATE, which
        # only counts when the record was new. No row back means a replayed ref, no counter
        # yet or no room left; those (rare) cases are told apart below.
        params = {
            "u_rid": record_id,
            "u_tid": tid,
            "u_meter": meter,
            "u_ref": ref,
            "u_n": n,
            "u_period": period_start,
            "u_at": created_at,
            "u_limit": limit,
        }
        used = (await session.execute(_pg_consume(limited), params)).scalar_one_or_none()
        if used is not None:
            return Usage(meter, int(used), limit, period_start, reset_at, counted=True)
        recorded = (
            await session.execute(
                select(UsageRecord.id).where(UsageRecord.meter == meter, UsageRecord.ref == ref)
            )
        ).scalar_one_or_none()
        if recorded != record_id:  # this ref was counted before: a retry or a replay
            return Usage(
                meter, await _used(session, meter, period_start), limit, period_start, reset_at, counted=False
            )
    counters = table_of(UsageCounter)
    cond = [counters.c.meter == meter, counters.c.period_start == period_start]
    if limited:
        cond.append(counters.c.used + n <= limit)
    bump = update(counters).where(and_(*cond)).values(used=counters.c.used + n).returning(counters.c.used)
    if session.get_bind().dialect.name != "postgresql":
        record = _insert(session)(UsageRecord.__table__).values(
            id=record_id,
            tenant_id=tid,
            meter=meter,
            ref=ref,
            n=n,
            period_start=period_start,
            created_at=created_at,
        )
        record = record.on_conflict_do_nothing(index_elements=["tenant_id", "meter", "ref"])
        recorded = (await session.execute(record.returning(UsageRecord.__table__.c.id))).scalar_one_or_none()
        if recorded is None:  # this ref was counted before: a retry or a replay
            return Usage(
                meter, await _used(session, meter, period_start), limit, period_start, reset_at, counted=False
            )
        used = (await session.execute(bump)).scalar_one_or_none()
    if used is None:  # no counter yet this period, or the allowance is used up
        await session.execute(
            _insert(session)(UsageCounter.__table__)
            .values(id=uuid7(), tenant_id=tid, meter=meter, period_start=period_start, used=0)
            .on_conflict_do_nothing(index_elements=["tenant_id", "meter", "period_start"])
        )
        used = (await session.execute(bump)).scalar_one_or_none()
    if used is None:
        # Take the record back so a caller that handles the error can go on with its transaction.
        await session.execute(
            delete(UsageRecord).where(UsageRecord.id == recorded).execution_options(synchronize_session=False)
        )
        used = await _used(session, meter, period_start)
        remaining = max(0, (limit or 0) - used)
        raise QuotaExceeded(
            f"the '{meter}' allowance is used up ({used} of {limit}; {remaining} left, {n} asked)",
            meter=meter,
            limit=limit,
            used=used,
            remaining=remaining,
            requested=n,
            reset_at=reset_at.isoformat() if reset_at else None,
        )
    return Usage(meter, int(used), limit, period_start, reset_at, counted=True)


async def _used(session: AsyncSession, meter: str, period_start: dt.datetime) -> int:
    v = (
        await session.execute(
            select(UsageCounter.used).where(
                UsageCounter.meter == meter, UsageCounter.period_start == period_start
            )
        )
    ).scalar_one_or_none()
    return int(v or 0)


async def check_seats(session: AsyncSession, n: int) -> None:
    """Seat hook for identity: refuse when active and invited users would exceed the seats."""
    from tessera.core.identity.models import User

    ent = await effective_entitlements(session)
    if ent.seats is None:
        return
    taken = int(
        (
            await session.execute(select(func.count()).select_from(User).where(User.status != "disabled"))
        ).scalar_one()
    )
    if taken + n > ent.seats:
        raise QuotaExceeded(
            f"all {ent.seats} seats of your subscription are taken",
            meter="seats",
            limit=ent.seats,
            used=taken,
            remaining=max(0, ent.seats - taken),
            requested=n,
            reset_at=None,
        )


async def usage_by_day(
    session: AsyncSession, meter: str | None, offset: int = 0
) -> tuple[Entitlements, dt.datetime, dt.datetime, list[dict[str, Any]]]:
    """Per meter per day of the current period (``offset=0``) or an earlier one (-1, -2, …)."""
    if meter is not None and meter not in METERS:
        raise UnknownMeter(f"'{meter}' is not a metered resource", field="meter")
    ent = await effective_entitlements(session)
    sub = await get_subscription(session)
    anchor = sub[0].period_start if sub else STOCK_PERIOD
    start, end = period_bounds(anchor, utcnow(), offset)
    dialect = session.get_bind().dialect.name
    day = (
        func.to_char(UsageRecord.created_at, "YYYY-MM-DD")
        if dialect == "postgresql"
        else func.strftime("%Y-%m-%d", UsageRecord.created_at)
    )
    stmt = (
        select(UsageRecord.meter, day.label("day"), func.sum(UsageRecord.n), func.count())
        .where(UsageRecord.created_at >= start, UsageRecord.created_at < end)
        .group_by(UsageRecord.meter, day)
        .order_by(UsageRecord.meter, day)
    )
    if meter:
        stmt = stmt.where(UsageRecord.meter == meter)
    rows = [
        {"meter": m, "day": d, "amount": int(total or 0), "events": int(cnt)}
        for m, d, total, cnt in (await session.execute(stmt)).all()
    ]
    return ent, start, end, rows


async def current_totals(session: AsyncSession, ent: Entitlements) -> list[dict[str, Any]]:
    out = []
    for meter in METERS:
        if meter == "seats":
            from tessera.core.identity.models import User

            used = int(
                (
                    await session.execute(
                        select(func.count()).select_from(User).where(User.status != "disabled")
                    )
                ).scalar_one()
            )
        else:
            used = await _used(session, meter, STOCK_PERIOD if meter in STOCK_METERS else ent.period_start)
        limit = ent.limit(meter)
        out.append(
            {
                "meter": meter,
                "used": used,
                "limit": limit,
                "remaining": None if limit is None else max(0, limit - used),
                "reset_at": None if meter in STOCK_METERS | COUNTED_METERS else ent.period_end,
            }
        )
    return out


# --- catalogue and assignment (operator) ----------------------------------------------------


async def ensure_default_catalogue(session: AsyncSession) -> list[str]:
    """Create version 1 of the default plans that do not exist yet (CLI and first tenant).

    Returns the keys created. Safe when two first tenants are created at the same time.
    """
    existing = set((await session.execute(select(Plan.key))).scalars())
    created = []
    for spec in DEFAULT_CATALOGUE:
        if spec["key"] in existing:
            continue
        now = utcnow()
        row = {
            "id": uuid7(),
            "version": 1,
            "period": "monthly",
            "currency": "CNY",
            "active": True,
            "created_at": now,
            "updated_at": now,
            **spec,
        }
        result = await session.execute(
            _insert(session)(Plan.__table__)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["key", "version"])
            .returning(Plan.__table__.c.key)
        )
        if result.scalar_one_or_none() is not None:
            created.append(spec["key"])
    return created


async def list_plans(session: AsyncSession, key: str | None = None) -> list[Plan]:
    stmt = select(Plan).order_by(Plan.key, Plan.version)
    if key:
        stmt = stmt.where(Plan.key == key)
    return list((await session.execute(stmt)).scalars())


async def get_plan(session: AsyncSession, plan_id: uuid.UUID) -> Plan:
    plan = await session.get(Plan, plan_id)
    if plan is None:
        raise PlanNotFound()
    return plan


async def latest_plan(session: AsyncSession, key: str, version: int | None = None) -> Plan:
    stmt = select(Plan).where(Plan.key == key)
    stmt = stmt.where(Plan.version == version) if version else stmt.where(Plan.active.is_(True))
    plan = (await session.execute(stmt.order_by(Plan.version.desc()).limit(1))).scalar_one_or_none()
    if plan is None:
        raise PlanNotFound(f"no plan '{key}'" + (f" version {version}" if version else ""), field="plan_key")
    return plan


def _validate_terms(modules: list[str], quotas: dict[str, Any]) -> None:
    for m in modules:
        if m not in MODULES:
            raise UnknownMeter(f"unknown module '{m}'", field="modules")
    for meter, amount in quotas.items():
        if meter not in METERS or meter in COUNTED_METERS:
            raise UnknownMeter(f"unknown meter '{meter}'", field=f"quotas.{meter}")
        if amount is not None and (not isinstance(amount, int) or amount < 0):
            raise UnknownMeter("must be a non-negative integer or null", field=f"quotas.{meter}")


async def create_plan_version(session: AsyncSession, data: dict[str, Any]) -> Plan:
    """A new plan, or the next version of an existing key."""
    _validate_terms(data.get("modules") or [], data.get("quotas") or {})
    last = (
        await session.execute(select(func.max(Plan.version)).where(Plan.key == data["key"]))
    ).scalar_one_or_none()
    plan = Plan(version=(last or 0) + 1, **data)
    session.add(plan)
    await session.flush()
    return plan


async def update_plan(
    session: AsyncSession, plan_id: uuid.UUID, name: str | None, active: bool | None
) -> Plan:
    plan = await get_plan(session, plan_id)
    if name is not None:
        plan.name = name
    if active is not None:
        plan.active = active
    await session.flush()
    return plan


async def delete_plan(session: AsyncSession, plan_id: uuid.UUID) -> None:
    """Delete an unused plan version. Whether tenants use it is the foreign key's call: row-level
    security hides other tenants' subscriptions from a count, but not from the constraint."""
    plan = await get_plan(session, plan_id)
    await session.delete(plan)
    try:
        await session.flush()
    except IntegrityError:
        raise PlanInUse("tenants subscribe to this plan version; deactivate it instead") from None


async def assign_plan(
    session: AsyncSession, plan: Plan, *, period_start: dt.datetime | None = None, status: str = "active"
) -> Subscription:
    """Subscribe the tenant in scope to ``plan`` (replacing its current plan)."""
    forget_entitlements(session)
    current = await get_subscription(session)
    before = (
        {"plan": f"{current[1].key}@{current[1].version}", "status": current[0].status} if current else None
    )
    if current is None:
        sub = Subscription(plan_id=plan.id, period_start=period_start or utcnow(), status=status)
        session.add(sub)
    else:
        sub = current[0]
        sub.plan_id = plan.id
        sub.status = status
        if period_start is not None:
            sub.period_start = period_start
    await session.flush()
    await audit.record(
        session,
        "subscription.assign",
        "subscription",
        sub.id,
        before=before,
        after={"plan": f"{plan.key}@{plan.version}", "status": status},
    )
    return sub


async def add_addon(
    session: AsyncSession, *, module: str | None, meter: str | None, amount: int
) -> SubscriptionAddOn:
    if (module is None) == (meter is None):
        raise UnknownMeter("give either a module or a meter", field="module")
    if module is not None and module not in MODULES:
        raise UnknownMeter(f"unknown module '{module}'", field="module")
    if meter is not None and meter not in METERS:
        raise UnknownMeter(f"unknown meter '{meter}'", field="meter")
    if meter is not None and amount <= 0:
        raise UnknownMeter("must be positive", field="amount")
    forget_entitlements(session)
    a = SubscriptionAddOn(module=module, meter=meter, amount=amount if meter else 0)
    session.add(a)
    await session.flush()
    await audit.record(
        session,
        "subscription.addon_add",
        "subscription_addon",
        a.id,
        after={"module": module, "meter": meter, "amount": a.amount},
    )
    return a


async def remove_addon(session: AsyncSession, addon_id: uuid.UUID) -> None:
    a = (
        await session.execute(select(SubscriptionAddOn).where(SubscriptionAddOn.id == addon_id))
    ).scalar_one_or_none()
    if a is None:
        raise AddOnNotFound()
    forget_entitlements(session)
    await audit.record(
        session,
        "subscription.addon_remove",
        "subscription_addon",
        a.id,
        before={"module": a.module, "meter": a.meter, "amount": a.amount},
    )
    await session.delete(a)
    await session.flush()


async def on_tenant_created(session: AsyncSession, tenant: Any) -> None:
    """Give a new tenant the default plan (seeding the catalogue on first use)."""
    await ensure_default_catalogue(session)
    await assign_plan(session, await latest_plan(session, default_plan_key()))
