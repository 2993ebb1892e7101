from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=2, max_length=64, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    name: str = Field(min_length=1, max_length=200)
    modules: list[str] = Field(default_factory=list)
    seats: int | None = Field(default=None, ge=1)
    quotas: dict[str, int | None] = Field(default_factory=dict)
    period: str = Field(default="monthly", pattern=r"^monthly$")
    price_minor: int = Field(default=0, ge=0)
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")


class PlanPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    active: bool | None = None


class PlanOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    key: str
    name: str
    version: int
    modules: list[str]
    seats: int | None
    quotas: dict[str, Any]
    period: str
    price_minor: int
    currency: str
    active: bool


class AssignPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plan_key: str = Field(min_length=1, max_length=64)
    version: int | None = Field(default=None, ge=1)
    period_start: dt.datetime | None = None
    status: str = Field(default="active", pattern=r"^(active|cancelled)$")


class AddOnIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    module: str | None = None
    meter: str | None = None
    amount: int = Field(default=0, ge=0)


class AddOnOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    module: str | None
    meter: str | None
    amount: int


class MeterUsage(BaseModel):
    meter: str
    used: int
    limit: int | None
    remaining: int | None
    reset_at: dt.datetime | None


class SubscriptionOut(BaseModel):
    plan: PlanOut | None
    status: str | None
    period_start: dt.datetime
    period_end: dt.datetime
    modules: list[str]
    seats: int | None
    addons: list[AddOnOut]
    entitlements: list[MeterUsage]


class DailyUsage(BaseModel):
    meter: str
    day: str
    amount: int
    events: int


class UsageOut(BaseModel):
    period_start: dt.datetime
    period_end: dt.datetime
    days: list[DailyUsage]
