"""Outbound webhooks: tenant endpoints, one delivery per (event, endpoint), its attempts."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.crypto.types import EncryptedString
from tessera.core.db.base import Base, IdMixin, TenantOwned, TimestampMixin, utcnow


class WebhookEndpoint(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "webhook_endpoints"

    url: Mapped[str] = mapped_column(String(2000))
    description: Mapped[str] = mapped_column(String(500), default="")
    event_types: Mapped[list[str]] = mapped_column(default=list)  # "*" matches every event
    secret: Mapped[str] = mapped_column(EncryptedString())
    active: Mapped[bool] = mapped_column(default=True)
    disabled_reason: Mapped[str | None] = mapped_column(String(500), default=None)
    disabled_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    failing_since: Mapped[dt.datetime | None] = mapped_column(default=None)
    last_success_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    next_seq: Mapped[int] = mapped_column(default=0)


class WebhookDelivery(IdMixin, TimestampMixin, TenantOwned, Base):
    """One event for one endpoint. Delivered in ``seq`` order per endpoint."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "seq"),
        Index("ix_webhook_deliveries_endpoint_status", "endpoint_id", "status", "seq"),
    )

    endpoint_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column()
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    response_code: Mapped[int | None] = mapped_column(default=None)
    latency_ms: Mapped[int | None] = mapped_column(default=None)
    last_error: Mapped[str | None] = mapped_column(String(2000), default=None)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    job_id: Mapped[uuid.UUID | None] = mapped_column(default=None)
    replay_of: Mapped[uuid.UUID | None] = mapped_column(default=None)
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)


class WebhookAttempt(IdMixin, TenantOwned, Base):
    """The log of one HTTP attempt of a delivery."""

    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column()
    request_body: Mapped[str] = mapped_column(Text)
    response_code: Mapped[int | None] = mapped_column(default=None)
    response_body: Mapped[str | None] = mapped_column(String(2000), default=None)
    latency_ms: Mapped[int] = mapped_column(default=0)
    error: Mapped[str | None] = mapped_column(String(2000), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
