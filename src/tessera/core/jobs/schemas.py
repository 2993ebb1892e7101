from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict


class JobOut(BaseModel):
    """A background job. ``priority``: lower runs first."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    queue: str
    priority: int
    status: str
    run_at: dt.datetime
    attempts: int
    max_attempts: int
    last_error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class OperatorJobOut(JobOut):
    tenant_id: uuid.UUID | None
    payload: dict[str, Any]
    locked_by: str | None
    locked_until: dt.datetime | None
    last_traceback: str | None
    idempotency_key: str | None


class QueueStatsOut(BaseModel):
    queue: str
    queued: int
    due: int
    running: int
    dead: int
    oldest_due_age_s: float
