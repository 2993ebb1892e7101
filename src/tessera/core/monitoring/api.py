"""Operator API: alert rules, incidents, current metric values, evaluate now."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from tessera.core.access.principal import OperatorPrincipal
from tessera.core.db.session import unit_of_work
from tessera.core.http.deps import require_operator
from tessera.core.http.errors import COMMON_ERRORS, error_responses
from tessera.core.monitoring import service

router = APIRouter(prefix="/v1/operator", tags=["operator"], responses=COMMON_ERRORS)
Operator = Annotated[OperatorPrincipal, Depends(require_operator)]
R404 = error_responses(404)


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    metric: str = Field(min_length=1, max_length=100)
    condition: Literal[">", "<"]
    threshold: float
    window_minutes: int = Field(default=5, ge=1, le=1440)
    severity: Literal["info", "warning", "critical"] = "warning"
    enabled: bool = True
    notify_url: HttpUrl | None = None


class RulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    metric: str | None = Field(default=None, min_length=1, max_length=100)
    condition: Literal[">", "<"] | None = None
    threshold: float | None = None
    window_minutes: int | None = Field(default=None, ge=1, le=1440)
    severity: Literal["info", "warning", "critical"] | None = None
    enabled: bool | None = None
    notify_url: HttpUrl | None = None


class RuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    metric: str
    condition: str
    threshold: float
    window_minutes: int
    severity: str
    enabled: bool
    notify_url: str | None


class IncidentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    rule_id: uuid.UUID
    status: str
    opened_at: dt.datetime
    resolved_at: dt.datetime | None
    value: float
    last_value: float
    message: str


def _dump(body: BaseModel, exclude_unset: bool) -> dict[str, object]:
    data = body.model_dump(exclude_unset=exclude_unset)
    if data.get("notify_url") is not None:
        data["notify_url"] = str(data["notify_url"])
    return data


@router.get("/alert-rules", response_model=list[RuleOut])
async def list_rules(op: Operator) -> list[RuleOut]:
    from sqlalchemy import select

    from tessera.core.monitoring.models import AlertRule

    async with unit_of_work(platform=True) as s:
        rows = (await s.execute(select(AlertRule).order_by(AlertRule.created_at))).scalars()
        return [RuleOut.model_validate(r) for r in rows]


@router.post("/alert-rules", response_model=RuleOut, status_code=201)
async def create_rule(body: RuleIn, op: Operator) -> RuleOut:
    async with unit_of_work(platform=True) as s:
        return RuleOut.model_validate(await service.create_rule(s, _dump(body, False)))


@router.get("/alert-rules/{rule_id}", response_model=RuleOut, responses=R404)
async def get_rule(rule_id: uuid.UUID, op: Operator) -> RuleOut:
    async with unit_of_work(platform=True) as s:
        return RuleOut.model_validate(await service.get_rule(s, rule_id))


@router.patch("/alert-rules/{rule_id}", response_model=RuleOut, responses=R404)
async def update_rule(rule_id: uuid.UUID, body: RulePatch, op: Operator) -> RuleOut:
    async with unit_of_work(platform=True) as s:
        return RuleOut.model_validate(await service.update_rule(s, rule_id, _dump(body, True)))


@router.delete("/alert-rules/{rule_id}", status_code=204, responses=R404)
async def delete_rule(rule_id: uuid.UUID, op: Operator) -> None:
    async with unit_of_work(platform=True) as s:
        await service.delete_rule(s, rule_id)


@router.get("/incidents", response_model=list[IncidentOut])
async def list_incidents(
    op: Operator,
    status: Annotated[str | None, Query(pattern=r"^(open|resolved)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[IncidentOut]:
    async with unit_of_work(platform=True) as s:
        return [IncidentOut.model_validate(i) for i in await service.list_incidents(s, status, limit)]


@router.get("/monitoring/metrics")
async def metric_values(
    op: Operator, window_minutes: Annotated[int, Query(ge=1, le=1440)] = 5
) -> dict[str, float | None]:
    """Current value of every metric rules can use (null: source not installed)."""
    async with unit_of_work(platform=True) as s:
        return await service.current_values(s, window_minutes)


@router.post("/monitoring/evaluate")
async def evaluate_now(op: Operator) -> list[dict[str, object]]:
    """Run one evaluation round now; returns the incidents opened or resolved."""
    async with unit_of_work(platform=True) as s:
        events = await service.evaluate(s)
    return [e.as_json() for e in events]
