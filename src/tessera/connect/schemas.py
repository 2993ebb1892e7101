"""Request and response models of the messaging API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_serializer

from tessera.core.access.masking import mask

MessageClass = Literal["verification", "notification", "marketing"]
ChannelKind = Literal["sms", "wechat", "email"]
MAX_BATCH = 10_000


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MessageIn(_In):
    channel_id: uuid.UUID | None = Field(
        None, description="Channel to send on; default: the tenant's first active SMS channel."
    )
    channel: ChannelKind = "sms"
    to: str = Field(
        min_length=1, max_length=64, description="Phone number (E.164 or national) or WeChat openid."
    )
    message_class: MessageClass = Field("notification", alias="class")
    body: str | None = Field(None, max_length=2000)
    template_id: uuid.UUID | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    subject: str | None = Field(None, max_length=255, description="Email: the subject (variables filled).")
    html: str | None = Field(
        None, max_length=200_000, description="Email: the HTML part; default: derived from the text."
    )
    signature: str | None = Field(
        None, max_length=32, description="Signature text; default: the approved default signature."
    )
    source: str | None = Field(None, max_length=21)
    scheduled_at: dt.datetime | None = None
    validity_minutes: int | None = Field(None, ge=1, le=7 * 24 * 60)
    reference: str | None = Field(None, max_length=128)
    campaign_id: uuid.UUID | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Recipient(_In):
    to: str = Field(min_length=1, max_length=64)
    variables: dict[str, str] = Field(default_factory=dict)
    reference: str | None = Field(None, max_length=128)


class BatchIn(_In):
    channel_id: uuid.UUID | None = None
    channel: ChannelKind = "sms"
    message_class: MessageClass = Field("notification", alias="class")
    body: str | None = Field(None, max_length=2000)
    template_id: uuid.UUID | None = None
    variables: dict[str, str] = Field(
        default_factory=dict, description="Shared variables; a recipient's own win."
    )
    subject: str | None = Field(None, max_length=255, description="Email: the subject (variables filled).")
    html: str | None = Field(
        None, max_length=200_000, description="Email: the HTML part; default: derived from the text."
    )
    signature: str | None = Field(None, max_length=32)
    source: str | None = Field(None, max_length=21)
    scheduled_at: dt.datetime | None = None
    validity_minutes: int | None = Field(None, ge=1, le=7 * 24 * 60)
    campaign_id: uuid.UUID | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    recipients: list[Recipient] = Field(min_length=1, max_length=MAX_BATCH)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Accepted(BaseModel):
    id: uuid.UUID
    status: str = Field(description="accepted, or held (waiting for a compliance review)")
    segments: int
    encoding: str
    code: str | None = Field(
        None, description="Why held or deferred (message.held_for_review, message.quiet_hours)."
    )
    scheduled_at: dt.datetime | None = Field(None, description="Deferred to this time (quiet hours).")


class RecipientResult(BaseModel):
    """A recipient of a batch whose message was not simply accepted."""

    index: int
    id: uuid.UUID
    status: str = Field(
        description="held or rejected (stored with the code as its reason); accepted when deferred"
    )
    code: str | None
    field: str | None
    message: str | None
    scheduled_at: dt.datetime | None = None


class BatchAccepted(BaseModel):
    count: int = Field(description="Messages stored, one per recipient, in order (ids).")
    ids: list[uuid.UUID]
    accepted: int = 0
    held: int = 0
    rejected: int = 0
    results: list[RecipientResult] = Field(
        default_factory=list, description="Per-recipient outcome of every message held, rejected or deferred."
    )


class PreviewIn(_In):
    body: str | None = Field(None, max_length=2000)
    template_id: uuid.UUID | None = None
    variables: dict[str, str] = Field(default_factory=dict)
    signature: str | None = None
    channel: ChannelKind = "sms"


class PreviewOut(BaseModel):
    text: str
    encoding: str
    segments: int
    characters: int
    parts: list[str]


class MessageEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    kind: str
    status: str
    detail: dict[str, Any]
    at: dt.datetime


def mask_recipient(channel: str, value: str | None) -> str | None:
    """A message's recipient masked by its channel's kind (an email address as an address)."""
    return mask("email" if channel == "email" else "phone", value)


class MessageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)
    id: uuid.UUID
    channel_id: uuid.UUID
    channel: str = Field(validation_alias="channel_kind")
    message_class: str = Field(serialization_alias="class")
    to: str  # masked by channel kind without pii:view (see _mask_to)
    source: str
    body: str
    template_id: uuid.UUID | None
    status: str
    reason: str | None
    carrier: str
    carrier_ids: list[str]
    segments: int
    encoding: str
    cost_minor: int
    currency: str
    route: dict[str, Any]
    link_id: uuid.UUID | None
    attempts: int
    resubmissions: int
    scheduled_at: dt.datetime | None
    valid_until: dt.datetime | None
    reference: str | None
    metadata: dict[str, Any] = Field(validation_alias="metadata_")
    campaign_id: uuid.UUID | None
    created_at: dt.datetime
    queued_at: dt.datetime | None
    submitted_at: dt.datetime | None
    done_at: dt.datetime | None

    @field_serializer("to")
    def _mask_to(self, value: str) -> str | None:
        return mask_recipient(self.channel, value)


class MessageDetail(MessageOut):
    events: list[MessageEventOut] = Field(default_factory=list)


class TemplateIn(_In):
    name: str = Field(min_length=1, max_length=120)
    message_class: MessageClass = Field(alias="class")
    bodies: dict[ChannelKind, str] = Field(min_length=1)
    external_id: str | None = Field(None, max_length=128)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class TemplatePatch(_In):
    name: str | None = Field(None, min_length=1, max_length=120)
    bodies: dict[ChannelKind, str] | None = None
    external_id: str | None = None


class RejectIn(_In):
    reason: str = Field(min_length=1, max_length=500)


class TemplateOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)
    id: uuid.UUID
    name: str
    message_class: str = Field(serialization_alias="class")
    bodies: dict[str, str]
    variables: list[str]
    status: str
    reject_reason: str | None
    external_id: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class SignatureIn(_In):
    text: str = Field(min_length=2, max_length=16, description="Brand name, without 【】.")
    is_default: bool = False


class SignatureOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    text: str
    status: str
    is_default: bool


class ChannelIn(_In):
    kind: ChannelKind
    name: str = Field(min_length=1, max_length=120)
    default_source: str = Field("", max_length=21)
    settings: dict[str, Any] = Field(default_factory=dict)
    secret: str | None = Field(
        None,
        max_length=8192,
        description='WeChat app secret; email: the SMTP password or {"smtp_password", "dkim_private_key"}.',
    )


class ChannelPatch(_In):
    name: str | None = Field(None, min_length=1, max_length=120)
    status: Literal["active", "disabled"] | None = None
    default_source: str | None = Field(None, max_length=21)
    settings: dict[str, Any] | None = Field(
        None,
        description="Merged into the current settings; a key set to null is removed. WeChat: appid, "
        "api_base; email: host, port, tls, username, from, dkim_selector, dkim_domain, … (checked).",
    )
    secret: str | None = Field(
        None,
        min_length=1,
        max_length=8192,
        description="Write-only, replaces the stored one: WeChat app secret; email: the SMTP password "
        'or {"smtp_password", "dkim_private_key"}.',
    )


class ChannelOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    kind: str
    name: str
    status: str
    default_source: str
    settings: dict[str, Any]


SourcePattern = Annotated[
    str, StringConstraints(min_length=1, max_length=22, pattern=r"^[A-Za-z0-9+ ._-]{1,21}\*?$")
]
RoutePrefix = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{0,14}$")]


class SourceRules(_In):
    """Source addresses a link may send from: exact (``10690001``) or a prefix ending in ``*``
    (``1069*``); an empty list allows any. A message whose source no active link of its
    channel allows is refused (422 naming ``source``)."""

    allowed: list[SourcePattern] = Field(default_factory=list, max_length=100)


class LinkIn(_In):
    name: str = Field(min_length=1, max_length=120)
    host: str = Field(min_length=1, max_length=255)
    port: int = Field(ge=1, le=65535)
    system_id: str = Field(min_length=1, max_length=15)
    password: str = Field(min_length=1, max_length=8)
    system_type: str = Field("", max_length=12)
    window: int = Field(10, ge=1, le=1000)
    tps: float | None = Field(None, gt=0, le=100_000)
    source_rules: SourceRules = Field(default_factory=SourceRules)


class LinkPatch(_In):
    """Fields left out stay as they are; ``tps`` null removes the limit. A running gateway
    rebinds the link within seconds when its connection, window or limit changes."""

    name: str | None = Field(None, min_length=1, max_length=120)
    host: str | None = Field(None, min_length=1, max_length=255)
    port: int | None = Field(None, ge=1, le=65535)
    system_id: str | None = Field(None, min_length=1, max_length=15)
    password: str | None = Field(None, min_length=1, max_length=8, description="Write-only.")
    system_type: str | None = Field(None, max_length=12)
    window: int | None = Field(None, ge=1, le=1000)
    tps: float | None = Field(None, gt=0, le=100_000)
    source_rules: SourceRules | None = None
    status: Literal["active", "disabled"] | None = None


class LinkOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    channel_id: uuid.UUID
    name: str
    host: str
    port: int
    system_id: str
    system_type: str
    window: int
    tps: float | None
    source_rules: dict[str, Any]
    status: str


class RouteIn(_In):
    carrier: str = Field("*", min_length=1, max_length=64, description='Carrier name; "*" = any.')
    message_class: MessageClass | None = Field(
        None, alias="class", description="verification, notification or marketing; null = any class."
    )
    prefix: RoutePrefix | None = Field(
        None, description="E.164 prefix of the recipient, e.g. +86 or +8613 (longest wins); null = any."
    )
    link_id: uuid.UUID
    priority: int = Field(0, ge=0, le=100)
    weight: int = Field(100, ge=1, le=10_000)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RoutePatch(_In):
    """Fields left out stay as they are; ``class`` or ``prefix`` null makes the route match any."""

    carrier: str | None = Field(None, min_length=1, max_length=64)
    message_class: MessageClass | None = Field(None, alias="class")
    prefix: RoutePrefix | None = None
    link_id: uuid.UUID | None = None
    priority: int | None = Field(None, ge=0, le=100)
    weight: int | None = Field(None, ge=1, le=10_000)
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class RouteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)
    id: uuid.UUID
    channel_id: uuid.UUID
    carrier: str
    message_class: str | None = Field(serialization_alias="class")
    prefix: str | None
    link_id: uuid.UUID
    priority: int
    weight: int
