"""Request/response models of the contacts context (never ORM classes)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tessera.core.access.masking import MaskedAddress, MaskedEmail, MaskedPhone

Lifecycle = Literal["subscriber", "lead", "qualified", "customer", "churned"]
Channel = Literal["sms", "email", "wechat", "voice"]
ConsentStatus = Literal["opted_in", "opted_out", "unknown"]
OtherKind = Literal["wechat_openid", "wechat_unionid", "wecom_external_id", "device_id"]
IdentityKind = Literal["phone", "email", "wechat_openid", "wechat_unionid", "wecom_external_id", "device_id"]
FieldType = Literal["text", "number", "date", "boolean", "choice", "multi_choice"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- custom fields ----------------------------------------------------------------------------


class FieldCreate(Strict):
    object_type: Literal["contact", "account"] = "contact"
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    label: str = Field(min_length=1, max_length=200)
    type: FieldType
    choices: list[str] = Field(default_factory=list, max_length=500)
    required: bool = False


class FieldOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    object_type: str
    key: str
    label: str
    type: str
    choices: list[str]
    required: bool


# --- contacts ---------------------------------------------------------------------------------


class ConsentIn(Strict):
    status: ConsentStatus
    source: str | None = Field(default=None, max_length=100)


class IdentityIn(Strict):
    kind: OtherKind
    value: str = Field(min_length=1, max_length=200)


class ContactBase(Strict):
    given_name: str | None = Field(default=None, max_length=100)
    family_name: str | None = Field(default=None, max_length=100)
    gender: Literal["male", "female", "other", "unknown"] | None = None
    birthday: dt.date | None = None
    address: str | None = Field(default=None, max_length=500)
    city: str | None = Field(default=None, max_length=100)
    language: str | None = Field(default=None, max_length=16)
    account_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    source: str | None = Field(default=None, max_length=64)
    lifecycle_stage: Lifecycle | None = None
    attributes: dict[str, Any] | None = None


class ContactCreate(ContactBase):
    name: str = Field(min_length=1, max_length=200)
    phones: list[str] = Field(
        default_factory=list, max_length=10, description="The first one is the primary phone."
    )
    emails: list[str] = Field(
        default_factory=list, max_length=10, description="The first one is the primary email."
    )
    identities: list[IdentityIn] = Field(default_factory=list, max_length=20)
    consent: dict[Channel, ConsentIn] = Field(default_factory=dict)
    tag_ids: list[uuid.UUID] = Field(default_factory=list, max_length=100)


class ContactUpdate(ContactBase):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    phones: list[str] | None = Field(default=None, max_length=10)
    emails: list[str] | None = Field(default=None, max_length=10)


class PhoneOut(BaseModel):
    value: MaskedPhone
    primary: bool


class EmailOut(BaseModel):
    value: MaskedEmail
    primary: bool


class IdentityOut(BaseModel):
    kind: str
    value: str


class ConsentOut(BaseModel):
    status: ConsentStatus
    source: str | None = None
    updated_at: dt.datetime | None = None


class ContactOut(BaseModel):
    id: uuid.UUID
    name: str
    given_name: str | None
    family_name: str | None
    gender: str | None
    birthday: str | None
    address: MaskedAddress | None
    city: str | None
    language: str | None
    account_id: uuid.UUID | None
    owner_id: uuid.UUID | None
    source: str | None
    lifecycle_stage: str
    attributes: dict[str, Any]
    phones: list[PhoneOut]
    emails: list[EmailOut]
    identities: list[IdentityOut]
    consent: dict[str, ConsentOut]
    tag_ids: list[uuid.UUID]
    created_at: dt.datetime
    updated_at: dt.datetime


class ConsentUpdate(Strict):
    channel: Channel
    status: ConsentStatus
    source: str | None = Field(default=None, max_length=100)


class DuplicateSuggestionOut(BaseModel):
    contact_id: uuid.UUID
    name: str
    score: int
    reasons: list[str]


class MergeRequest(Strict):
    loser_id: uuid.UUID
    field_winners: dict[str, Literal["survivor", "loser"]] = Field(
        default_factory=dict,
        description="Per field, whose value the survivor keeps (default: survivor, or the "
        "loser's when the survivor's is empty).",
    )


class MergeOut(BaseModel):
    id: uuid.UUID
    survivor_id: uuid.UUID
    loser_id: uuid.UUID
    field_winners: dict[str, Any]
    merged_at: dt.datetime


class BulkUpsertRequest(Strict):
    records: list[ContactCreate] = Field(min_length=1, max_length=5000)


class BulkRecordResult(BaseModel):
    index: int
    status: Literal["created", "updated", "failed"]
    contact_id: uuid.UUID | None = None
    error: dict[str, Any] | None = None


class BulkUpsertResult(BaseModel):
    created: int
    updated: int
    failed: int
    results: list[BulkRecordResult]


# --- accounts ---------------------------------------------------------------------------------


class AccountCreate(Strict):
    name: str = Field(min_length=1, max_length=300)
    industry: str | None = Field(default=None, max_length=100)
    size: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=100)
    parent_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)


class AccountUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=300)
    industry: str | None = Field(default=None, max_length=100)
    size: str | None = Field(default=None, max_length=32)
    region: str | None = Field(default=None, max_length=100)
    parent_id: uuid.UUID | None = None
    owner_id: uuid.UUID | None = None
    attributes: dict[str, Any] | None = None


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    industry: str | None
    size: str | None
    region: str | None
    parent_id: uuid.UUID | None
    owner_id: uuid.UUID | None
    attributes: dict[str, Any]
    created_at: dt.datetime


# --- tags -------------------------------------------------------------------------------------


class TagGroupCreate(Strict):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    name: str = Field(min_length=1, max_length=200)


class TagGroupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    key: str
    name: str


class TagCreate(Strict):
    name: str = Field(min_length=1, max_length=100)
    group_id: uuid.UUID | None = None
    segment_id: uuid.UUID | None = Field(
        default=None,
        description="Makes this a rule tag: contacts of this dynamic segment get the tag (source "
        "`rule`) and lose it when they leave, at every refresh of the segment.",
    )


class TagUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=100)
    segment_id: uuid.UUID | None = Field(
        default=None, description="Set a dynamic segment to make this a rule tag; null makes it manual."
    )


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    group_id: uuid.UUID | None
    segment_id: uuid.UUID | None = None


class TagAssign(Strict):
    contact_ids: list[uuid.UUID] = Field(min_length=1, max_length=10000)
    tag_ids: list[uuid.UUID] = Field(min_length=1, max_length=100)


class TagAssignResult(BaseModel):
    linked: int


# --- events -----------------------------------------------------------------------------------


class EventIdentity(Strict):
    contact_id: uuid.UUID | None = None
    kind: IdentityKind | None = None
    value: str | None = Field(default=None, max_length=200)


class EventIn(Strict):
    contact: EventIdentity
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:\-]+$")
    properties: dict[str, Any] = Field(default_factory=dict)
    occurred_at: dt.datetime | None = None
    source: str | None = Field(default=None, max_length=64)


class EventBatch(Strict):
    events: list[EventIn] = Field(min_length=1, max_length=1000)


class EventAccepted(BaseModel):
    id: uuid.UUID
    contact_id: uuid.UUID


class EventBatchResult(BaseModel):
    accepted: int
    rejected: list[dict[str, Any]]


class TimelineItem(BaseModel):
    at: dt.datetime
    source: str
    kind: str
    title: str
    data: dict[str, Any] = Field(default_factory=dict)


class Timeline(BaseModel):
    items: list[TimelineItem]


# --- segments ---------------------------------------------------------------------------------


class SegmentCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    kind: Literal["dynamic", "static"] = "dynamic"
    rules: dict[str, Any] | None = None


class SegmentUpdate(Strict):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    rules: dict[str, Any] | None = None


class SegmentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    kind: str
    rules: dict[str, Any] | None
    member_count: int
    refreshed_at: dt.datetime | None
    created_at: dt.datetime


class SegmentPreview(Strict):
    rules: dict[str, Any]


class CountOut(BaseModel):
    count: int


class RefreshOut(BaseModel):
    member_count: int
    entered: int
    left: int


class StaticMembers(Strict):
    contact_ids: list[uuid.UUID] = Field(min_length=1, max_length=10000)


# --- imports / exports ------------------------------------------------------------------------


class ImportOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    status: str
    filename: str | None
    encoding: str | None
    mapping: dict[str, Any]
    options: dict[str, Any]
    total_rows: int
    rows_done: int
    rows_created: int
    rows_updated: int
    rows_failed: int
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    error: str | None
    rows_per_second: float | None = None
    eta_seconds: float | None = None
    headers: list[str] = Field(default_factory=list)


class MappingUpdate(Strict):
    mapping: dict[str, str] = Field(
        description="Column header → target field (name, phone, email, city, attributes.<key>, "
        "tags, … or 'skip')."
    )


class RowProblem(BaseModel):
    row: int
    field: str
    rule: str
    message: str


class DryRunOut(BaseModel):
    total_rows: int
    valid_rows: int
    invalid_rows: int
    duplicates_in_file: int
    problems: list[RowProblem]


class ExportRequest(Strict):
    filters: dict[str, str] = Field(default_factory=dict)
    segment_id: uuid.UUID | None = None


class QualityOut(BaseModel):
    contacts: int
    completeness: dict[str, float]
    invalid_phones: int
    invalid_emails: int
    duplicate_rate: float
