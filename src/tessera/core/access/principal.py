"""Who is calling: the resolved identity every authorisation decision reads."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from tessera.core.access.permissions import matches
from tessera.core.context import Actor


@dataclass(frozen=True, slots=True)
class Principal:
    tenant_id: uuid.UUID
    actor: Actor
    role_key: str
    permissions: frozenset[str]
    visibility: dict[str, str] = field(default_factory=dict)
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    department_id: uuid.UUID | None = None
    department_path: str | None = None
    team_ids: frozenset[uuid.UUID] = frozenset()
    locale: str = "en"
    session_id: uuid.UUID | None = None
    csrf_token: str | None = None
    mfa_passed: bool = True

    def has(self, permission: str) -> bool:
        return matches(self.permissions, permission)

    def scope_for(self, object_type: str) -> str:
        """Record visibility for ``object_type``: ``own``, ``team``, ``department`` or ``all``."""
        return self.visibility.get(object_type) or self.visibility.get("default") or "own"

    @property
    def can_see_pii(self) -> bool:
        return self.has("pii:view")


@dataclass(frozen=True, slots=True)
class OperatorPrincipal:
    operator_id: uuid.UUID
    email: str

    @property
    def actor(self) -> Actor:
        return Actor(kind="operator", id=self.operator_id, label=self.email)
