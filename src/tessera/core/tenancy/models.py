from __future__ import annotations

import datetime as dt

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.db.base import Base, IdMixin, TimestampMixin


class Tenant(IdMixin, TimestampMixin, Base):
    """An enterprise using the installation. Not tenant-owned: it is the tenant."""

    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(63), unique=True)
    locale: Mapped[str] = mapped_column(String(16), default="en")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    status: Mapped[str] = mapped_column(String(16), default="active")
    default_region: Mapped[str] = mapped_column(String(2), default="CN")
    logo_path: Mapped[str | None] = mapped_column(String(300), default=None)
    suspended_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    terminate_after: Mapped[dt.datetime | None] = mapped_column(default=None)


class Operator(IdMixin, TimestampMixin, Base):
    """A platform operator: administers tenants, never sees tenant data implicitly."""

    __tablename__ = "operators"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(16), default="active")


class OperatorKey(IdMixin, TimestampMixin, Base):
    __tablename__ = "operator_keys"

    operator_id: Mapped[str] = mapped_column(String(36))
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(default=None)
