"""Request and response models of the compliance API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

from tessera.core.access.masking import MaskedEmail, MaskedPhone, mask

WordAction = Literal["block", "hold", "replace"]
ListKind = Literal["block", "allow", "empty"]
Channel = Literal["sms", "wechat", "email", "voice"]
MessageClass = Literal["verification", "notification", "marketing"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WordIn(_In):
    word: str = Field(min_length=1, max_length=200)
    category: str = Field("general", min_length=1, max_length=64)
    action: WordAction
    replacement: str | None = Field(None, max_length=200)
    whole_word: bool = False


class WordOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    word: str
    category: str
    action: str
    replacement: str | None
    whole_word: bool
    created_at: dt.datetime


class EntryIn(_In):
    value: str = Field(min_length=3, max_length=320, description="E.164 phone or email")
    note: str = Field("", max_length=200)


class EntryOut(BaseModel):
    id: uuid.UUID
    list: str
    kind: str
    phone: MaskedPhone | None = None
    email: MaskedEmail | None = None
    note: str
    created_at: dt.datetime


class OptOutIn(_In):
    channel: Channel = "sms"
    address: str = Field(min_length=3, max_length=320)


class OptOutOut(BaseModel):
    id: uuid.UUID
    channel: str
    phone: MaskedPhone | None = None
    email: MaskedEmail | None = None
    source: str
    created_at: dt.datetime


def _hhmm(v: str | None) -> str | None:
    if v is None:
        return None
    try:
        t = dt.time.fromisoformat(v)
    except ValueError:
        raise ValueError("use HH:MM") from None
    return f"{t.hour:02d}:{t.minute:02d}"


class SettingsIn(_In):
    quiet_start: str | None = Field(None, description="HH:MM in the tenant time zone")
    quiet_end: str | None = None
    cap_count: int | None = Field(None, ge=1, le=1000)
    cap_window_hours: int | None = Field(None, ge=1, le=24 * 31, description="null resets to 24")
    opt_out_keywords: list[str] | None = Field(
        None, max_length=50, description="null resets to the built-in keywords"
    )
    opt_out_reply: str | None = Field(None, max_length=500, description="null resets to the default reply")

    _v = field_validator("quiet_start", "quiet_end")(_hhmm)


class SettingsOut(BaseModel):
    quiet_start: str | None
    quiet_end: str | None
    cap_count: int | None
    cap_window_hours: int
    opt_out_keywords: list[str]
    opt_out_reply: str


class CheckIn(_In):
    channel: Channel = "sms"
    message_class: MessageClass = Field("notification", alias="class")
    to: str = Field(min_length=3, max_length=320)
    body: str = Field(min_length=1, max_length=5000)
    now: dt.datetime | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class HitOut(BaseModel):
    word: str
    category: str
    action: str
    start: int
    end: int


class DecisionOut(BaseModel):
    verdict: str
    code: str | None
    message: str
    replaced_body: str
    hits: list[HitOut]
    not_before: dt.datetime | None


class ReviewOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    channel: str
    message_class: str
    to: str  # masked by channel kind without pii:view (see _mask_to)
    body: str
    hits: list[dict[str, Any]]
    reason: str
    status: str
    decided_by: str | None
    decided_at: dt.datetime | None
    decision_note: str | None
    message_id: uuid.UUID | None
    created_at: dt.datetime

    @field_serializer("to")
    def _mask_to(self, value: str) -> str | None:
        return mask("email" if self.channel == "email" else "phone", value)


class DecisionIn(_In):
    note: str | None = Field(None, max_length=500)
