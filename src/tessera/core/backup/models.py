"""Per-tenant exports (tenant-owned) and tenant deletions (platform: the record survives)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, String, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TenantOwned, TimestampMixin


class TenantExport(IdMixin, TimestampMixin, TenantOwned, Base):
    """A request for every row of the tenant as JSON lines per table in a zip."""

    __tablename__ = "tenant_exports"

    status: Mapped[str] = mapped_column(String(16), default="pending")
    requested_by: Mapped[str] = mapped_column(String(320), default="")
    file_name: Mapped[str | None] = mapped_column(String(300), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    row_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(String(1000), default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class TenantDeletion(IdMixin, TimestampMixin, Base):
    """A scheduled deletion of a terminated tenant. Platform-level on purpose: no foreign key
    to ``tenants``, so this row is the audit record that outlives the tenant."""

    __tablename__ = "tenant_deletions"

    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid(), index=True)
    tenant_slug: Mapped[str] = mapped_column(String(63))
    tenant_name: Mapped[str] = mapped_column(String(200))
    requested_by: Mapped[str] = mapped_column(String(320))
    reason: Mapped[str] = mapped_column(String(1000), default="")
    delete_after: Mapped[dt.datetime]
    status: Mapped[str] = mapped_column(String(16), default="scheduled", index=True)
    completed_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    cancelled_by: Mapped[str | None] = mapped_column(String(320), default=None)
    row_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
