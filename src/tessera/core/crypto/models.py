from __future__ import annotations

import datetime as dt

from sqlalchemy import LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TenantOwned, utcnow


class TenantKey(IdMixin, TenantOwned, Base):
    """A tenant's data or blind-index key, wrapped (AES-GCM) by a master key."""

    __tablename__ = "tenant_keys"
    __table_args__ = (UniqueConstraint("tenant_id", "purpose", "version"),)

    purpose: Mapped[str] = mapped_column(String(8))  # "data" | "index"
    version: Mapped[int]
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_key_id: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
