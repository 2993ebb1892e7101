from __future__ import annotations

import datetime as dt
import uuid

from pydantic import BaseModel, ConfigDict, Field

EventType = str  # "contact.created", "message.*" is not a pattern: use exact names or "*"
EVENT_PATTERN = r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*)$"


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=8, max_length=2000, description="http(s) URL receiving POSTs.")
    event_types: list[str] = Field(
        min_length=1, max_length=100, description="Event names to send, or ['*'] for all."
    )
    description: str = Field(default="", max_length=500)
    active: bool = True


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, min_length=8, max_length=2000)
    event_types: list[str] | None = Field(default=None, min_length=1, max_length=100)
    description: str | None = Field(default=None, max_length=500)
    active: bool | None = Field(default=None, description="true re-enables a disabled endpoint.")


class EndpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    description: str
    event_types: list[str]
    active: bool
    disabled_reason: str | None
    disabled_at: dt.datetime | None
    failing_since: dt.datetime | None
    last_success_at: dt.datetime | None
    created_at: dt.datetime


class EndpointCreated(EndpointOut):
    secret: str = Field(description="Signing secret; shown only in this response.")


class DeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    endpoint_id: uuid.UUID
    seq: int
    event_id: str
    event_type: str
    status: str
    attempts: int
    response_code: int | None
    latency_ms: int | None
    last_error: str | None
    next_attempt_at: dt.datetime | None
    delivered_at: dt.datetime | None
    replay_of: uuid.UUID | None
    created_at: dt.datetime


class AttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    attempt: int
    response_code: int | None
    response_body: str | None
    latency_ms: int
    error: str | None
    created_at: dt.datetime


class DeliveryDetail(DeliveryOut):
    body: str
    attempt_log: list[AttemptOut] = []
