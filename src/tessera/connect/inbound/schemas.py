"""Request and response models of the inbound API."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tessera.core.access.masking import MaskedPhone


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keyword: str = Field(min_length=1, max_length=64)
    match: Literal["exact", "contains"] = "exact"
    reply: str = Field(min_length=1, max_length=1000)
    priority: int = Field(100, ge=0, le=10_000)
    active: bool = True


class RuleOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    keyword: str
    match: str
    reply: str
    priority: int
    active: bool


class MoIn(BaseModel):
    """An MO message handed over by an HTTP carrier adapter."""

    model_config = ConfigDict(extra="forbid")
    source: str = Field(min_length=3, max_length=32, description="The sender's number")
    destination: str = Field("", max_length=32, description="The number or code the message was sent to")
    text: str = Field(min_length=0, max_length=2000)


class InboundOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    channel: str
    from_: MaskedPhone = Field(serialization_alias="from")
    to: str
    body: str
    contact_id: uuid.UUID | None
    opt_out: bool
    rule_id: uuid.UUID | None
    reply_message_id: uuid.UUID | None
    received_at: dt.datetime
