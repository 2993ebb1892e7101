"""The job queue table.

Not tenant-owned for row-level security: workers claim jobs of every tenant in one query.
It carries a nullable ``tenant_id`` and the runner puts that tenant in scope around the
handler, so handlers see the same tenant wall as a request. Priority: lower runs first.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, utcnow, uuid7
from tessera.core.tenancy import models as _tenancy_models  # noqa: F401  (FK target)

STATUSES = ("queued", "running", "done", "dead", "cancelled")


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # NULLs are distinct in a unique constraint on both backends: "unique where not null",
        # and usable as an ON CONFLICT target for idempotent enqueue and cron materialisation.
        UniqueConstraint("idempotency_key"),
        Index(
            "ix_jobs_claim",
            "queue",
            "priority",
            "run_at",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        Index(
            "ix_jobs_lease",
            "locked_until",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        Index("ix_jobs_tenant_created", "tenant_id", "created_at"),
        Index("ix_jobs_queue_status", "queue", "status"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), default=None
    )
    name: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(64), default="default")
    priority: Mapped[int] = mapped_column(default=0)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    run_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int] = mapped_column(default=10)
    locked_by: Mapped[str | None] = mapped_column(String(128), default=None)
    locked_until: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(Text, default=None)
    last_traceback: Mapped[str | None] = mapped_column(Text, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(300), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
