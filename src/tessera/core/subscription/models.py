"""Plans (platform catalogue), tenant subscriptions, add-ons and usage metering."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TenantOwned, TimestampMixin


class Plan(IdMixin, TimestampMixin, Base):
    """One version of a plan. Not tenant-owned: the catalogue belongs to the platform.

    A change to a plan's terms is a new version; subscriptions keep the version they bought.
    """

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("key", "version"),)

    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    version: Mapped[int] = mapped_column(default=1)
    modules: Mapped[list[str]] = mapped_column(default=list)
    seats: Mapped[int | None] = mapped_column(default=None)
    # meter -> allowance per period; a meter that is absent is unlimited.
    quotas: Mapped[dict[str, Any]] = mapped_column(default=dict)
    period: Mapped[str] = mapped_column(String(16), default="monthly")
    price_minor: Mapped[int] = mapped_column(BigInteger, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    active: Mapped[bool] = mapped_column(default=True)


class Subscription(IdMixin, TimestampMixin, TenantOwned, Base):
    """The tenant's plan. One row per tenant."""

    __tablename__ = "subscriptions"
    __table_args__ = (UniqueConstraint("tenant_id"),)

    plan_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("plans.id", ondelete="RESTRICT"), index=True)
    period_start: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16), default="active")


class SubscriptionAddOn(IdMixin, TimestampMixin, TenantOwned, Base):
    """A module bought on top of the plan, or extra allowance of a meter (``seats`` included)."""

    __tablename__ = "subscription_addons"

    module: Mapped[str | None] = mapped_column(String(64), default=None)
    meter: Mapped[str | None] = mapped_column(String(64), default=None)
    amount: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageCounter(IdMixin, TenantOwned, Base):
    """Used amount of one meter in one period: the row every consumer updates atomically."""

    __tablename__ = "usage_counters"
    __table_args__ = (UniqueConstraint("tenant_id", "meter", "period_start"),)

    meter: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[dt.datetime]
    used: Mapped[int] = mapped_column(BigInteger, default=0)


class UsageRecord(IdMixin, TenantOwned, Base):
    """One consumption; unique on (tenant, meter, ref) so a retried job counts once."""

    __tablename__ = "usage_records"
    __table_args__ = (
        UniqueConstraint("tenant_id", "meter", "ref"),
        Index("ix_usage_records_tenant_meter_created", "tenant_id", "meter", "created_at"),
    )

    meter: Mapped[str] = mapped_column(String(64))
    ref: Mapped[str] = mapped_column(String(128))
    n: Mapped[int] = mapped_column(BigInteger)
    period_start: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]
