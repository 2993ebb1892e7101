"""Contacts context models: contacts, identities, consent, accounts, custom fields, tags,
behaviour events, segments, merge history and import/export jobs.

No ORM relationships: every load is an explicit query in the repository (rule 5).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ForeignKey, Index, PrimaryKeyConstraint, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.crypto.types import EncryptedString
from tessera.core.db.base import Base, IdMixin, TenantOwned, TimestampMixin, utcnow, uuid7

LIFECYCLE_STAGES = ("subscriber", "lead", "qualified", "customer", "churned")
CONSENT_CHANNELS = ("sms", "email", "wechat", "voice")
CONSENT_STATUSES = ("opted_in", "opted_out", "unknown")
IDENTITY_KINDS = (
    "phone",
    "email",
    "wechat_openid",
    "wechat_unionid",
    "wecom_external_id",
    "device_id",
)
FIELD_TYPES = ("text", "number", "date", "boolean", "choice", "multi_choice")


class FieldDefinition(IdMixin, TimestampMixin, TenantOwned, Base):
    """A tenant's custom attribute of contacts or accounts."""

    __tablename__ = "contact_field_definitions"
    __table_args__ = (UniqueConstraint("tenant_id", "object_type", "key"),)

    object_type: Mapped[str] = mapped_column(String(16))  # contact | account
    key: Mapped[str] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(16))
    choices: Mapped[list[str]] = mapped_column(default=list)
    required: Mapped[bool] = mapped_column(default=False)


class Account(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "accounts"

    name: Mapped[str] = mapped_column(String(300), index=True)
    industry: Mapped[str | None] = mapped_column(String(100), default=None)
    size: Mapped[str | None] = mapped_column(String(32), default=None)
    region: Mapped[str | None] = mapped_column(String(100), default=None)
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None, index=True
    )
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None, index=True
    )
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Contact(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "contacts"
    # Bulk imports write millions of rows: tenant_id is served by ix_contacts_tenant_created
    # (no index of its own), and the owner/account indexes leave out the NULLs imports write
    # (migration 0012).
    __table_args__ = (
        Index("ix_contacts_tenant_created", "tenant_id", "created_at"),
        Index(
            "ix_contacts_account_id",
            "account_id",
            postgresql_where=text("account_id IS NOT NULL"),
            sqlite_where=text("account_id IS NOT NULL"),
        ),
        Index(
            "ix_contacts_owner_id",
            "owner_id",
            postgresql_where=text("owner_id IS NOT NULL"),
            sqlite_where=text("owner_id IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))

    name: Mapped[str] = mapped_column(String(200))
    given_name: Mapped[str | None] = mapped_column(String(100), default=None)
    family_name: Mapped[str | None] = mapped_column(String(100), default=None)
    gender: Mapped[str | None] = mapped_column(String(16), default=None)
    birthday: Mapped[str | None] = mapped_column(EncryptedString(), default=None)
    address: Mapped[str | None] = mapped_column(EncryptedString(), default=None)
    city: Mapped[str | None] = mapped_column(String(100), default=None)
    language: Mapped[str | None] = mapped_column(String(16), default=None)
    account_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("accounts.id", ondelete="SET NULL"), default=None
    )
    owner_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    source: Mapped[str | None] = mapped_column(String(64), default=None)
    lifecycle_stage: Mapped[str] = mapped_column(String(16), default="lead")
    attributes: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # Last 4 digits of the primary phone: lets duplicate suggestions narrow candidates without
    # decrypting every row (4 digits identify nobody).
    phone_tail: Mapped[str | None] = mapped_column(
        String(4).with_variant(String(4, collation="C"), "postgresql"), default=None, index=True
    )  # compared byte by byte on PostgreSQL (migration 0015)
    merged_into_id: Mapped[uuid.UUID | None] = mapped_column(default=None)


class ContactIdentity(TenantOwned, Base):
    """A phone, email or channel id of a contact; ``value_index`` is the blind index."""

    __tablename__ = "contact_identities"
    # tenant_id is served by the unique index it leads (no index of its own: migration 0012);
    # the primary key leads with contact_id, so it also serves a contact's identities and the
    # foreign key (one index written per identity instead of two: migration 0016)
    __table_args__ = (
        PrimaryKeyConstraint("contact_id", "id", name="pk_contact_identities"),
        UniqueConstraint("tenant_id", "kind", "value_index"),
    )

    id: Mapped[uuid.UUID] = mapped_column(default=uuid7)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))

    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    # compared byte by byte on PostgreSQL (migration 0015): only ever tested for equality
    kind: Mapped[str] = mapped_column(String(24).with_variant(String(24, collation="C"), "postgresql"))
    value: Mapped[str] = mapped_column(EncryptedString())
    value_index: Mapped[str] = mapped_column(String(32).with_variant(String(32, collation="C"), "postgresql"))
    is_primary: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ContactConsent(TenantOwned, Base):
    __tablename__ = "contact_consents"

    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))
    source: Mapped[str | None] = mapped_column(String(100), default=None)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class TagGroup(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "contact_tag_groups"
    __table_args__ = (UniqueConstraint("tenant_id", "key"),)

    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))


class Tag(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "contact_tags"
    __table_args__ = (UniqueConstraint("tenant_id", "group_id", "name"),)

    group_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contact_tag_groups.id", ondelete="CASCADE"), default=None
    )
    name: Mapped[str] = mapped_column(String(100))
    # A rule tag: its "rule" links follow the dynamic segment's membership at every refresh.
    segment_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("contact_segments.id", ondelete="SET NULL"), default=None, index=True
    )


class ContactTag(TenantOwned, Base):
    __tablename__ = "contact_tag_links"
    # Segment counts: "has tag" reads one slice of this index (migration 0009).
    __table_args__ = (Index("ix_contact_tag_links_tenant_tag_contact", "tenant_id", "tag_id", "contact_id"),)

    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True
    )
    tag_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contact_tags.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    source: Mapped[str] = mapped_column(String(16), default="manual")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ContactEvent(IdMixin, TenantOwned, Base):
    """A behaviour event (page view, purchase, …) of a contact."""

    __tablename__ = "contact_events"
    __table_args__ = (
        Index("ix_contact_events_contact_name_time", "contact_id", "name", "occurred_at"),
        # Segment counts: "did <name> since <time>" as an index-only range scan (migration 0009).
        Index("ix_contact_events_tenant_name_time", "tenant_id", "name", "occurred_at", "contact_id"),
    )

    contact_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    properties: Mapped[dict[str, Any]] = mapped_column(default=dict)
    occurred_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    source: Mapped[str | None] = mapped_column(String(64), default=None)


class Segment(IdMixin, TimestampMixin, TenantOwned, Base):
    __tablename__ = "contact_segments"

    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))  # dynamic | static
    rules: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    member_count: Mapped[int] = mapped_column(default=0)
    refreshed_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class SegmentMember(TenantOwned, Base):
    __tablename__ = "contact_segment_members"

    segment_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contact_segments.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("contacts.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    added_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ContactMerge(IdMixin, TenantOwned, Base):
    """What a merge did: the loser's full snapshot, so nothing is lost."""

    __tablename__ = "contact_merges"

    survivor_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    loser_id: Mapped[uuid.UUID] = mapped_column()
    loser_snapshot: Mapped[str] = mapped_column(EncryptedString())  # JSON, has personal data
    field_winners: Mapped[dict[str, Any]] = mapped_column(default=dict)
    merged_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class DataJob(IdMixin, TimestampMixin, TenantOwned, Base):
    """An import or export of contacts and its progress."""

    __tablename__ = "contact_data_jobs"

    kind: Mapped[str] = mapped_column(String(16))  # import | export
    status: Mapped[str] = mapped_column(String(16), default="uploaded")
    filename: Mapped[str | None] = mapped_column(String(300), default=None)
    file_path: Mapped[str | None] = mapped_column(Text, default=None)
    encoding: Mapped[str | None] = mapped_column(String(16), default=None)
    mapping: Mapped[dict[str, Any]] = mapped_column(default=dict)
    options: Mapped[dict[str, Any]] = mapped_column(default=dict)
    total_rows: Mapped[int] = mapped_column(default=0)
    rows_done: Mapped[int] = mapped_column(default=0)
    rows_created: Mapped[int] = mapped_column(default=0)
    rows_updated: Mapped[int] = mapped_column(default=0)
    rows_failed: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    finished_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    result_path: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)


# --- console: duplicate suggestions a person dismissed (added for the duplicates queue) -------


class DuplicateDismissal(IdMixin, TenantOwned, Base):
    """A suggested pair someone judged "not the same person"; the queue no longer offers it.

    ``contact_a_id`` is the smaller id of the pair, so each pair is stored once.
    """

    __tablename__ = "contact_duplicate_dismissals"
    __table_args__ = (UniqueConstraint("tenant_id", "contact_a_id", "contact_b_id"),)

    contact_a_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"))
    contact_b_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("contacts.id", ondelete="CASCADE"), index=True)
    dismissed_by: Mapped[uuid.UUID | None] = mapped_column(default=None)
    dismissed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
