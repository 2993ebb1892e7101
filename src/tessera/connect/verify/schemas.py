"""Request and response models of the verification API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress

from tessera.core.access.masking import MaskedPhone


class VerifyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    to: str = Field(min_length=3, max_length=64, description="Phone number (E.164 or national)")
    channel: Literal["sms", "voice", "email"] = "sms"
    template: str = Field("default", min_length=1, max_length=64, description="Label for statistics")
    locale: str = Field("en", pattern=r"^[a-z]{2}(-[A-Za-z]{2,4})?$")
    code_length: int = Field(6, ge=4, le=8)
    ttl_seconds: int = Field(600, ge=60, le=3600)
    client_ip: IPvAnyAddress | None = Field(
        None, description="The end user's IP address as your backend sees it; limits per IP apply to it"
    )
    fallback_after_seconds: int | None = Field(
        30,
        ge=5,
        le=600,
        description="SMS only: call with the code by voice when not delivered by then; null: never",
    )


class VerifyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    to: MaskedPhone
    channel: str
    template: str
    locale: str
    status: str
    expires_at: dt.datetime
    checks: int
    sends: int
    message_id: uuid.UUID | None
    voice_used: bool
    voice_status: str | None
    created_at: dt.datetime


class CheckIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=4, max_length=8, pattern=r"^[0-9]+$")


class CheckOut(BaseModel):
    id: uuid.UUID
    status: Literal["approved", "denied"]
    checks_left: int


class TemplateStats(BaseModel):
    template: str
    sent: int
    delivered: int
    approved: int
    voice_fallbacks: int
    conversion_rate: float
    avg_seconds_to_delivery: float | None
    p50_seconds_to_delivery: float | None
