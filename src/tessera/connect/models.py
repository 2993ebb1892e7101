"""Connect messaging models: channels, SMPP links, routes, templates, signatures, messages.

Everything a tenant owns is :class:`TenantOwned`. Two tables are platform-level on purpose
(no tenant column filter, no row-level security) because the gateway works across tenants
before it knows which tenant a row belongs to: :class:`DispatchItem` (the dispatch queue, one
row per message waiting for or being submitted) and :class:`CarrierReceiptKey` (carrier
message id → tenant and message, to match delivery receipts). Neither holds personal data.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.crypto.types import EncryptedString
from tessera.core.db.base import Base, IdMixin, TenantOwned, TimestampMixin, utcnow

CHANNEL_KINDS = ("sms", "wechat")
MESSAGE_CLASSES = ("verification", "notification", "marketing")
LANES = {"verification": 0, "notification": 1, "marketing": 2}
FINAL_STATUSES = ("delivered", "failed", "expired", "rejected")
MESSAGE_STATUSES = ("accepted", "held", "queued", "submitted", *FINAL_STATUSES)
TEMPLATE_STATUSES = ("draft", "pending", "approved", "rejected")


class Channel(IdMixin, TimestampMixin, TenantOwned, Base):
    """A sending account of a tenant on one channel kind (sms, wechat)."""

    __tablename__ = "connect_channels"
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="active")
    default_source: Mapped[str] = mapped_column(String(32), default="")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secret: Mapped[str | None] = mapped_column(EncryptedString(), nullable=True)


class Link(IdMixin, TimestampMixin, TenantOwned, Base):
    """One SMPP bind towards a carrier (or aggregator)."""

    __tablename__ = "connect_links"
    channel_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connect_channels.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(120))
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    system_id: Mapped[str] = mapped_column(String(16))
    password: Mapped[str] = mapped_column(EncryptedString())
    system_type: Mapped[str] = mapped_column(String(13), default="")
    window: Mapped[int] = mapped_column(Integer, default=10)
    tps: Mapped[float | None] = mapped_column(nullable=True)
    # {"allowed": ["10690001", "1069*"]}: the source addresses (exact, or a prefix ending in
    # "*") this link may send from; empty = any. Checked when a message is accepted and when
    # the dispatcher picks a link (tessera.connect.routing).
    source_rules: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")


class RouteEntry(IdMixin, TimestampMixin, TenantOwned, Base):
    """Route table row: for a channel, a message class (null = any), a carrier ('*' = any) and a
    number prefix (null = any, e.g. ``+86`` or ``+8613``, matched against the E.164 recipient),
    send over ``link_id``.

    Matching (:mod:`tessera.connect.routing`): class-specific rows before any-class rows, then
    carrier (and prefix) matches, then the longest prefix, before the catch-all. Lower
    ``priority`` is tried first; entries of equal priority share traffic by ``weight``; the next
    priority is the failover, then the less specific matching rows."""

    __tablename__ = "connect_routes"
    channel_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connect_channels.id", ondelete="CASCADE"), index=True
    )
    carrier: Mapped[str] = mapped_column(String(64), default="*")
    message_class: Mapped[str | None] = mapped_column(String(16), nullable=True, default=None)
    prefix: Mapped[str | None] = mapped_column(String(16), nullable=True, default=None)
    link_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connect_links.id", ondelete="CASCADE"))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    weight: Mapped[int] = mapped_column(Integer, default=100)


class RateCard(IdMixin, TimestampMixin, TenantOwned, Base):
    """Price per segment for a channel kind and carrier ('*' = any)."""

    __tablename__ = "connect_rate_cards"
    __table_args__ = (UniqueConstraint("tenant_id", "channel_kind", "carrier"),)
    channel_kind: Mapped[str] = mapped_column(String(16))
    carrier: Mapped[str] = mapped_column(String(64), default="*")
    price_minor: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")


class PortedNumber(IdMixin, TimestampMixin, TenantOwned, Base):
    """Mobile number portability: the carrier a number moved to (overrides the prefix)."""

    __tablename__ = "connect_ported_numbers"
    __table_args__ = (UniqueConstraint("tenant_id", "number_index"),)
    number_index: Mapped[str] = mapped_column(String(64))
    carrier: Mapped[str] = mapped_column(String(64))


class Template(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "connect_templates"
    name: Mapped[str] = mapped_column(String(120))
    message_class: Mapped[str] = mapped_column(String(16))
    bodies: Mapped[dict[str, Any]] = mapped_column(default=dict)
    variables: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[str] = mapped_column(String(16), default="draft")
    reject_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    external_id: Mapped[str | None] = mapped_column(String(128), nullable=True)


class Signature(IdMixin, TimestampMixin, TenantOwned, Base):
    """An SMS signature 【Brand】 put in front of every SMS body."""

    __tablename__ = "connect_signatures"
    __table_args__ = (UniqueConstraint("tenant_id", "text"),)
    text: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    is_default: Mapped[bool] = mapped_column(default=False)


class Message(TenantOwned, Base):
    __tablename__ = "connect_messages"
    __table_args__ = (
        Index("ix_connect_messages_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_connect_messages_tenant_to", "tenant_id", "to_index"),
        Index("ix_connect_messages_tenant_reference", "tenant_id", "reference"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    channel_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("connect_channels.id", ondelete="CASCADE"))
    channel_kind: Mapped[str] = mapped_column(String(16))
    message_class: Mapped[str] = mapped_column(String(16))
    to: Mapped[str] = mapped_column(EncryptedString())
    to_index: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(32), default="")
    body: Mapped[str] = mapped_column(Text)
    template_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    variables: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    carrier: Mapped[str] = mapped_column(String(64), default="")
    carrier_ids: Mapped[list[str]] = mapped_column(default=list)
    segments: Mapped[int] = mapped_column(SmallInteger, default=1)
    encoding: Mapped[str] = mapped_column(String(8), default="gsm7")
    cost_minor: Mapped[int] = mapped_column(Integer, default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    route: Mapped[dict[str, Any]] = mapped_column(default=dict)
    link_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
    attempts: Mapped[int] = mapped_column(SmallInteger, default=0)
    resubmissions: Mapped[int] = mapped_column(SmallInteger, default=0)
    scheduled_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    valid_until: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    reference: Mapped[str | None] = mapped_column(String(128), nullable=True)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    campaign_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    submitted_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    done_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MessageEvent(TenantOwned, Base):
    """History of one message: every status change and every resubmission."""

    __tablename__ = "connect_message_events"
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    message_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("connect_messages.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(16))
    detail: Mapped[dict[str, Any]] = mapped_column(default=dict)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DispatchItem(Base):
    """Platform-level dispatch queue: one row per message not yet recorded as submitted.

    ``state`` 0 = ready, 1 = claimed by gateway ``claimed_by`` (queued / being submitted),
    2 = a verification code assigned by the API to gateway ``claimed_by``, which takes it from
    the announcement (see :mod:`tessera.connect.push`). Claimed and assigned rows of a gateway
    whose heartbeat stopped are put back and resubmitted."""

    __tablename__ = "connect_dispatch"
    __table_args__ = (Index("ix_connect_dispatch_ready", "state", "lane", "available_at"),)
    message_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("tenants.id", ondelete="CASCADE"))
    lane: Mapped[int] = mapped_column(SmallInteger)
    state: Mapped[int] = mapped_column(SmallInteger, default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    available_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    claims: Mapped[int] = mapped_column(SmallInteger, default=0)


class CarrierReceiptKey(Base):
    """Carrier message id (per part) → tenant and message, to match delivery receipts."""

    __tablename__ = "connect_carrier_ids"
    link_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    carrier_id: Mapped[str] = mapped_column(String(72), primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(Uuid(), ForeignKey("tenants.id", ondelete="CASCADE"))
    message_id: Mapped[uuid.UUID] = mapped_column()
    part: Mapped[int] = mapped_column(SmallInteger, default=0)
    parts: Mapped[int] = mapped_column(SmallInteger, default=1)
    outcome: Mapped[str | None] = mapped_column(String(16), nullable=True)


class GatewayHeartbeat(Base):
    """Live gateway processes; claims of a gateway with a stale heartbeat are recovered."""

    __tablename__ = "connect_gateways"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    heartbeat_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    # hears the dispatch channel and takes the codes pushed to it (tessera.connect.push)
    code_push: Mapped[bool] = mapped_column(default=False, server_default=false())
