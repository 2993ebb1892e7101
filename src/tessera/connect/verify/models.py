"""Verifications: one row per code sent; the code itself is never stored, only a salted HMAC."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, Index, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.crypto.types import EncryptedString
from tessera.core.db.base import Base, IdMixin, TenantOwned, TimestampMixin

STATUSES = ("pending", "approved", "expired", "refused")


class Verification(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "verify_verifications"
    __table_args__ = (
        Index("ix_verify_verifications_tenant_to", "tenant_id", "to_index", "created_at"),
        Index("ix_verify_verifications_tenant_ip", "tenant_id", "ip", "created_at"),
        Index("ix_verify_verifications_tenant_template", "tenant_id", "template", "created_at"),
    )
    channel: Mapped[str] = mapped_column(String(8))
    to: Mapped[str] = mapped_column(EncryptedString())
    to_index: Mapped[str] = mapped_column(String(64))
    template: Mapped[str] = mapped_column(String(64), default="default")
    locale: Mapped[str] = mapped_column(String(16), default="en")
    code_length: Mapped[int] = mapped_column(SmallInteger)
    code_salt: Mapped[str] = mapped_column(String(32))
    code_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(12), default="pending")
    expires_at: Mapped[dt.datetime] = mapped_column()
    checks: Mapped[int] = mapped_column(SmallInteger, default=0)
    sends: Mapped[int] = mapped_column(SmallInteger, default=1)
    last_sent_at: Mapped[dt.datetime] = mapped_column()
    ip: Mapped[str | None] = mapped_column(String(45), nullable=True)
    message_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    fallback_after: Mapped[int | None] = mapped_column(Integer, nullable=True)
    voice_used: Mapped[bool] = mapped_column(Boolean, default=False)
    voice_call_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    voice_status: Mapped[str | None] = mapped_column(String(16), nullable=True)
    approved_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    # sealed copy kept only while a voice call may still need it (see verify.service)
    code_sealed: Mapped[str | None] = mapped_column(EncryptedString(), nullable=True)
