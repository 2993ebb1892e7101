"""Inbound (MO) messages and keyword auto-reply rules."""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import Boolean, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.crypto.types import EncryptedString
from tessera.core.db.base import Base, IdMixin, TenantOwned, TimestampMixin, utcnow


class InboundMessage(IdMixin, TenantOwned, Base):
    __tablename__ = "inbound_messages"
    __table_args__ = (
        Index("ix_inbound_messages_tenant_received", "tenant_id", "received_at", "id"),
        Index("ix_inbound_messages_tenant_from", "tenant_id", "from_index"),
    )
    channel: Mapped[str] = mapped_column(String(16), default="sms")
    from_: Mapped[str] = mapped_column("from", EncryptedString())
    from_index: Mapped[str] = mapped_column(String(64))
    to: Mapped[str] = mapped_column(String(32), default="")
    body: Mapped[str] = mapped_column(Text)
    contact_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    opt_out: Mapped[bool] = mapped_column(Boolean, default=False)
    rule_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    reply_message_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AutoReplyRule(IdMixin, TimestampMixin, TenantOwned, Base):
    """Reply ``reply`` to an MO whose normalised text equals (or contains) ``keyword``."""

    __tablename__ = "inbound_auto_reply_rules"
    __table_args__ = (UniqueConstraint("tenant_id", "keyword"),)
    keyword: Mapped[str] = mapped_column(String(64))
    match: Mapped[str] = mapped_column(String(8), default="exact")
    reply: Mapped[str] = mapped_column(Text)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
