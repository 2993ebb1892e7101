"""Jobs: the tenant's own jobs (read-only) and the operator's queue tools."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from tessera.core.access.principal import OperatorPrincipal, Principal
from tessera.core.db.session import unit_of_work
from tessera.core.http.deps import DbSession, require, require_operator
from tessera.core.http.errors import COMMON_ERRORS, Conflict, NotFound, error_responses
from tessera.core.http.listing import FilterField, FilterSet, ListQuery, Page, apply_listing, page_of
from tessera.core.jobs import service
from tessera.core.jobs.models import STATUSES, Job
from tessera.core.jobs.schemas import JobOut, OperatorJobOut, QueueStatsOut

router = APIRouter(prefix="/v1", responses=COMMON_ERRORS)
JobsRead = Annotated[Principal, Depends(require("jobs:read"))]
Operator = Annotated[OperatorPrincipal, Depends(require_operator)]

JOB_FILTERS = FilterSet(
    fields={
        "queue": FilterField(Job.queue),
        "status": FilterField(Job.status, choices=STATUSES),
        "name": FilterField(Job.name, operators=("eq", "in", "contains")),
        "created_at": FilterField(Job.created_at, kind=dt.datetime, operators=("gte", "lte")),
    },
    sortable={"created_at": Job.created_at, "run_at": Job.run_at},
    id_column=Job.id,
)


class JobNotFound(NotFound):
    """The job does not exist."""

    code = "job.not_found"


class JobStateConflict(Conflict):
    """The job is not in a state that allows this action."""

    code = "job.invalid_state"


@router.get("/jobs", tags=["jobs"], response_model=Page[JobOut])
async def list_jobs(request: Request, principal: JobsRead, session: DbSession) -> Page[JobOut]:
    """The tenant's background jobs. Filters: `queue`, `status`, `name`, `created_at__gte/lte`."""
    q = ListQuery.from_params(request.query_params, JOB_FILTERS)
    stmt = apply_listing(service.tenant_jobs_query(principal.tenant_id), q, JOB_FILTERS)
    rows = (await session.execute(stmt)).scalars().all()
    items, cursor = page_of(rows, q, JOB_FILTERS)
    return Page[JobOut](items=[JobOut.model_validate(j) for j in items], next_cursor=cursor)


@router.get("/jobs/{job_id}", tags=["jobs"], response_model=JobOut, responses=error_responses(404))
async def get_job(job_id: uuid.UUID, principal: JobsRead, session: DbSession) -> JobOut:
    stmt = service.tenant_jobs_query(principal.tenant_id).where(Job.id == job_id)
    job = (await session.execute(stmt)).scalar_one_or_none()
    if job is None:
        raise JobNotFound()
    return JobOut.model_validate(job)


# --- operator --------------------------------------------------------------------------------


@router.get("/operator/jobs", tags=["operator"], response_model=Page[OperatorJobOut])
async def operator_list_jobs(request: Request, op: Operator) -> Page[OperatorJobOut]:
    """Every tenant's jobs. Filters: `queue`, `status`, `name`, `created_at__gte/lte`."""
    q = ListQuery.from_params(request.query_params, JOB_FILTERS)
    async with unit_of_work(platform=True) as s:
        rows = (await s.execute(apply_listing(service.jobs_query(), q, JOB_FILTERS))).scalars().all()
    items, cursor = page_of(rows, q, JOB_FILTERS)
    return Page[OperatorJobOut](items=[OperatorJobOut.model_validate(j) for j in items], next_cursor=cursor)


@router.get("/operator/jobs/queues", tags=["operator"], response_model=list[QueueStatsOut])
async def operator_queue_stats(op: Operator) -> list[QueueStatsOut]:
    """Depth per queue and status, and the age of the oldest due job."""
    async with unit_of_work(platform=True) as s:
        stats = await service.queue_stats(s)
    return [QueueStatsOut(**asdict(st)) for st in stats]


@router.get(
    "/operator/jobs/{job_id}",
    tags=["operator"],
    response_model=OperatorJobOut,
    responses=error_responses(404),
)
async def operator_get_job(job_id: uuid.UUID, op: Operator) -> OperatorJobOut:
    async with unit_of_work(platform=True) as s:
        job = await service.get(s, job_id)
        if job is None:
            raise JobNotFound()
        return OperatorJobOut.model_validate(job)


@router.post(
    "/operator/jobs/{job_id}/retry",
    tags=["operator"],
    response_model=OperatorJobOut,
    responses=error_responses(404, 409),
)
async def operator_retry_job(job_id: uuid.UUID, op: Operator) -> OperatorJobOut:
    """Queue a dead, cancelled or waiting job again now, with its attempts reset."""
    async with unit_of_work(platform=True) as s:
        try:
            job = await service.retry(s, job_id)
        except service.JobStateError as exc:
            raise JobStateConflict(str(exc)) from None
        if job is None:
            raise JobNotFound()
        return OperatorJobOut.model_validate(job)


@router.post(
    "/operator/jobs/{job_id}/cancel",
    tags=["operator"],
    response_model=OperatorJobOut,
    responses=error_responses(404, 409),
)
async def operator_cancel_job(job_id: uuid.UUID, op: Operator) -> OperatorJobOut:
    """Cancel a queued job."""
    async with unit_of_work(platform=True) as s:
        try:
            job = await service.cancel(s, job_id)
        except service.JobStateError as exc:
            raise JobStateConflict(str(exc)) from None
        if job is None:
            raise JobNotFound()
        return OperatorJobOut.model_validate(job)
