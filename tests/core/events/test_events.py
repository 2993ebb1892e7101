from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import pytest
from sqlalchemy import select

from tessera.core import context
from tessera.core.db.session import unit_of_work
from tessera.core.events import registry
from tessera.core.events import service as events
from tessera.core.jobs.models import Job
from tessera.core.jobs.registry import JobContext, handler
from tests.conftest import TenantWorld
from tests.core.jobs.support import run_worker_until_idle

received: list[tuple[str, dict[str, Any], uuid.UUID | None]] = []


@registry.on("test_thing.happened", queue="test_events")
async def first(payload: dict[str, Any], job: JobContext) -> None:
    received.append(("first", payload, context.current_tenant_id_or_none()))


@handler("test_events.second", queue="test_events")
async def second(payload: dict[str, Any], job: JobContext) -> None:
    received.append(("second", payload, job.tenant_id))
    if payload["data"].get("fail"):
        raise RuntimeError("second subscriber fails alone")


registry.subscriber("test_thing.happened", "test_events.second")


@pytest.fixture(autouse=True)
def _clear() -> None:
    received.clear()


async def test_publish_runs_every_subscriber_with_the_envelope(tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await events.publish(s, "test_thing.happened", {"thing_id": "t1"})
    await run_worker_until_idle(["test_events"])
    assert sorted(r[0] for r in received) == ["first", "second"]
    envs = [r[1] for r in received]
    assert envs[0] == envs[1]
    env = envs[0]
    assert env["event"] == "test_thing.happened" and env["data"] == {"thing_id": "t1"}
    assert uuid.UUID(env["event_id"]).version == 7
    assert dt.datetime.fromisoformat(env["occurred_at"]).tzinfo is not None
    assert {r[2] for r in received} == {tenant.tenant_id}


async def test_rolled_back_publish_leaves_nothing(tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id), pytest.raises(RuntimeError):
        async with unit_of_work() as s:
            await events.publish(s, "test_thing.happened", {})
            raise RuntimeError("abort")
    async with unit_of_work(platform=True) as s:
        assert (await s.execute(select(Job).where(Job.queue == "test_events"))).first() is None


async def test_one_failing_subscriber_does_not_affect_another(tenant: TenantWorld) -> None:
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await events.publish(s, "test_thing.happened", {"fail": True})
    async with unit_of_work(platform=True) as s:
        jobs = (await s.execute(select(Job).where(Job.queue == "test_events"))).scalars().all()
        for j in jobs:
            j.max_attempts = 1
    await run_worker_until_idle(["test_events"])
    async with unit_of_work(platform=True) as s:
        statuses = dict(
            (await s.execute(select(Job.name, Job.status).where(Job.queue == "test_events"))).all()
        )
    assert statuses["test_events.second"] == "dead"
    assert [v for k, v in statuses.items() if k != "test_events.second"] == ["done"]


async def test_publish_without_subscribers_or_tenant(db: Any) -> None:
    async with unit_of_work(platform=True) as s:
        await events.publish(s, "nobody.listens", {"a": 1})
    async with unit_of_work(platform=True) as s:
        assert (await s.execute(select(Job))).first() is None
    assert registry.subscribers_of("nobody.listens") == []
