from __future__ import annotations

import datetime as dt
import uuid
import zoneinfo

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    slug: str
    locale: str
    timezone: str
    currency: str
    status: str
    default_region: str
    created_at: dt.datetime


class TenantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    locale: str | None = Field(default=None, pattern=r"^(en|zh_Hans)$")
    timezone: str | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$")
    default_region: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is not None and v not in zoneinfo.available_timezones():
            raise ValueError("must be an IANA time zone such as Asia/Shanghai")
        return v


class TenantCreate(TenantSettings):
    name: str = Field(min_length=1, max_length=200)  # type: ignore[assignment]
    slug: str = Field(min_length=2, max_length=63, pattern=r"^[a-z0-9][a-z0-9-]*[a-z0-9]$")
    owner_email: EmailStr | None = None
    owner_name: str | None = Field(default=None, max_length=200)
    owner_password: str | None = Field(default=None, min_length=10, max_length=256)
