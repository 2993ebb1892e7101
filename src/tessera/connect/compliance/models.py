"""Compliance data: word lists, block/allow/empty-number lists, opt-outs, settings, reviews.

Word and number lists come in two scopes. The operator's global lists are platform tables
(``compliance_global_*``, no ``tenant_id``, no row-level security): they hold policy data
(regulator-listed words and numbers), not a tenant's personal data, and every tenant reads
them. A tenant's own lists are :class:`TenantOwned`. The matcher of a tenant merges both
(global words cannot be weakened by a tenant entry). ``compliance_versions`` holds one
counter per scope (``"global"`` or the tenant id) that is bumped on every list change, so
the in-process :class:`~tessera.connect.compliance.MatcherCache` rebuilds only on change.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import Boolean, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from tessera.core.crypto.types import EncryptedString
from tessera.core.db.base import Base, IdMixin, TenantOwned, TimestampMixin

WORD_ACTIONS = ("block", "hold", "replace")
LIST_KINDS = ("block", "allow", "empty")
ADDRESS_KINDS = ("phone", "email")
REVIEW_STATUSES = ("pending", "approved", "rejected")


class ComplianceWord(IdMixin, TimestampMixin, TenantOwned, Base):
    """A word of the tenant's own list."""

    __tablename__ = "compliance_words"
    __table_args__ = (UniqueConstraint("tenant_id", "word"),)
    word: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64), default="general")
    action: Mapped[str] = mapped_column(String(16))
    replacement: Mapped[str | None] = mapped_column(String(200), nullable=True)
    whole_word: Mapped[bool] = mapped_column(Boolean, default=False)


class GlobalWord(IdMixin, TimestampMixin, Base):
    """A word of the operator's global list (platform table; applies to every tenant)."""

    __tablename__ = "compliance_global_words"
    __table_args__ = (UniqueConstraint("word"),)
    word: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64), default="general")
    action: Mapped[str] = mapped_column(String(16))
    replacement: Mapped[str | None] = mapped_column(String(200), nullable=True)
    whole_word: Mapped[bool] = mapped_column(Boolean, default=False)


class ListVersion(Base):
    """Version counter of a word list scope (``global`` or a tenant id)."""

    __tablename__ = "compliance_versions"
    scope: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


class ListEntry(IdMixin, TimestampMixin, TenantOwned, Base):
    """A number or email on the tenant's block, allow or empty-number list."""

    __tablename__ = "compliance_list_entries"
    __table_args__ = (UniqueConstraint("tenant_id", "list_kind", "value_index"),)
    list_kind: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(EncryptedString())
    value_index: Mapped[str] = mapped_column(String(64), index=True)
    note: Mapped[str] = mapped_column(String(200), default="")


class GlobalListEntry(IdMixin, TimestampMixin, Base):
    """A number or email on the operator's global block or empty-number list (platform data)."""

    __tablename__ = "compliance_global_entries"
    __table_args__ = (UniqueConstraint("list_kind", "value"),)
    list_kind: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(8))
    value: Mapped[str] = mapped_column(String(320))
    note: Mapped[str] = mapped_column(String(200), default="")


class OptOut(IdMixin, TimestampMixin, TenantOwned, Base):
    """A recipient who opted out of a tenant's messages on one channel."""

    __tablename__ = "compliance_opt_outs"
    __table_args__ = (UniqueConstraint("tenant_id", "channel", "address_index"),)
    channel: Mapped[str] = mapped_column(String(16))
    address: Mapped[str] = mapped_column(EncryptedString())
    address_index: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16), default="api")


class ComplianceSettings(IdMixin, TimestampMixin, TenantOwned, Base):
    """Per-tenant rules for marketing messages and opt-out keywords (one row per tenant).

    Quiet hours are minutes after local midnight in the tenant time zone; a window may wrap
    midnight (21:00-08:00). ``cap_count`` marketing messages per recipient per
    ``cap_window_hours``; ``None`` disables a rule."""

    __tablename__ = "compliance_settings"
    __table_args__ = (UniqueConstraint("tenant_id"),)
    quiet_start: Mapped[int | None] = mapped_column(Integer, nullable=True)
    quiet_end: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cap_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cap_window_hours: Mapped[int] = mapped_column(Integer, default=24)
    opt_out_keywords: Mapped[list[str]] = mapped_column(default=list)
    opt_out_reply: Mapped[str] = mapped_column(Text, default="")


class Review(IdMixin, TimestampMixin, TenantOwned, Base):
    """A message held for human review; ``payload`` is the send request released on approval."""

    __tablename__ = "compliance_reviews"
    channel: Mapped[str] = mapped_column(String(16))
    message_class: Mapped[str] = mapped_column(String(16))
    to: Mapped[str] = mapped_column(EncryptedString())
    body: Mapped[str] = mapped_column(Text)
    hits: Mapped[list[Any]] = mapped_column(default=list)
    reason: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    decided_by: Mapped[str | None] = mapped_column(String(120), nullable=True)
    decided_at: Mapped[dt.datetime | None] = mapped_column(nullable=True)
    decision_note: Mapped[str | None] = mapped_column(Text, nullable=True)
    message_id: Mapped[uuid.UUID | None] = mapped_column(nullable=True)
