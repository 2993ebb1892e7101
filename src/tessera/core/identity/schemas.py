from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from tessera.core.access.masking import MaskedEmail, MaskedPhone

Scope = Literal["own", "team", "department", "all"]


class ORM(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class UserOut(ORM):
    id: uuid.UUID
    email: MaskedEmail
    name: str
    phone: MaskedPhone | None = None
    locale: str | None
    status: str
    role_id: uuid.UUID
    department_id: uuid.UUID | None
    totp_enabled: bool
    last_login_at: dt.datetime | None
    created_at: dt.datetime


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    name: str = Field(min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    role_id: uuid.UUID | None = Field(default=None, description="Default: the 'member' role.")
    department_id: uuid.UUID | None = None
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2}(_[A-Z][a-zA-Z]{1,3})?$")
    password: str | None = Field(
        default=None,
        min_length=10,
        max_length=256,
        description="Omit to invite: the user sets a password from an emailed link.",
    )


class UserUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    role_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    locale: str | None = Field(default=None, pattern=r"^[a-z]{2}(_[A-Z][a-zA-Z]{1,3})?$")


class UnmaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: list[Literal["email", "phone"]] = Field(min_length=1)


class RoleOut(ORM):
    id: uuid.UUID
    key: str
    name: str
    description: str
    builtin: bool
    permissions: list[str]
    visibility: dict[str, str]


class RoleCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    key: str = Field(min_length=2, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)
    permissions: list[str] = Field(default_factory=list, max_length=500)
    visibility: dict[str, Scope] = Field(default_factory=lambda: {"default": "own"})  # type: ignore[arg-type]


class RoleUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=1000)
    permissions: list[str] | None = Field(default=None, max_length=500)
    visibility: dict[str, Scope] | None = None


class PermissionOut(BaseModel):
    name: str
    description: str


class DepartmentOut(ORM):
    id: uuid.UUID
    name: str
    parent_id: uuid.UUID | None
    path: str


class DepartmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    parent_id: uuid.UUID | None = None


class DepartmentUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    parent_id: uuid.UUID | None = None


class TeamOut(ORM):
    id: uuid.UUID
    name: str
    department_id: uuid.UUID | None
    member_ids: list[uuid.UUID] = Field(default_factory=list)


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    department_id: uuid.UUID | None = None
    member_ids: list[uuid.UUID] = Field(default_factory=list, max_length=1000)


class TeamUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    department_id: uuid.UUID | None = None
    member_ids: list[uuid.UUID] | None = Field(default=None, max_length=1000)


class ApiKeyOut(ORM):
    id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None
    created_at: dt.datetime


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The secret key. Shown only in this response.")


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[str] = Field(
        default_factory=list,
        max_length=200,
        description="Permissions of the key; default: the creator's permissions.",
    )
    expires_at: dt.datetime | None = None


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace: str = Field(min_length=1, max_length=63, description="The tenant's slug.")
    email: EmailStr
    password: str = Field(min_length=1, max_length=256)


class LoginResult(BaseModel):
    mfa_required: bool
    user: UserOut
    csrf_token: str


class MfaCode(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=6, max_length=20, description="A TOTP code or a recovery code.")


class MfaEnrolment(BaseModel):
    secret: str
    otpauth_uri: str


class RecoveryCodes(BaseModel):
    recovery_codes: list[str]


class PasswordResetRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    workspace: str = Field(min_length=1, max_length=63)
    email: EmailStr


class PasswordResetConfirm(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=10, max_length=200)
    password: str = Field(min_length=10, max_length=256)


class Me(BaseModel):
    user: UserOut | None
    tenant_id: uuid.UUID
    role: str
    permissions: list[str]
    api_key_id: uuid.UUID | None = None
