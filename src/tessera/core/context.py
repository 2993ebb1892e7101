"""The ambient request/job context: who is acting, for which tenant, under which request id.

Set once by the HTTP authentication dependency or the job runner; read by the repository
base (tenant filter), the audit log, the crypto column type and the logger. Nothing else
decides which tenant a query belongs to.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Actor:
    """Whoever performs an action: a user, an API key, a platform operator or the system."""

    kind: str  # "user" | "api_key" | "operator" | "system"
    id: uuid.UUID | None = None
    label: str = ""


SYSTEM = Actor(kind="system", label="system")


@dataclass(slots=True)
class RequestContext:
    request_id: str = ""
    ip: str | None = None
    user_agent: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_tenant: ContextVar[uuid.UUID | None] = ContextVar("tessera_tenant", default=None)
_actor: ContextVar[Actor] = ContextVar("tessera_actor", default=SYSTEM)
_principal: ContextVar[Any] = ContextVar("tessera_principal", default=None)
_EMPTY_REQUEST = RequestContext()
_request: ContextVar[RequestContext] = ContextVar("tessera_request", default=_EMPTY_REQUEST)


class NoTenantInScope(RuntimeError):
    """Raised when tenant-owned data is touched with no tenant in scope (a programming error)."""


def current_tenant_id() -> uuid.UUID:
    tid = _tenant.get()
    if tid is None:
        raise NoTenantInScope("no tenant in scope")
    return tid


def current_tenant_id_or_none() -> uuid.UUID | None:
    return _tenant.get()


def current_actor() -> Actor:
    return _actor.get()


def current_principal() -> Any:
    return _principal.get()


def current_request() -> RequestContext:
    return _request.get()


def set_request(ctx: RequestContext) -> None:
    _request.set(ctx)


def bind(tenant_id: uuid.UUID | None, actor: Actor | None = None, principal: Any = None) -> None:
    """Bind tenant and actor for the rest of the current task (used by auth dependencies)."""
    _tenant.set(tenant_id)
    if actor is not None:
        _actor.set(actor)
    if principal is not None:
        _principal.set(principal)


@contextlib.contextmanager
def tenant_scope(tenant_id: uuid.UUID | None, actor: Actor = SYSTEM, principal: Any = None) -> Iterator[None]:
    """Run a block as ``actor`` inside ``tenant_id`` (jobs, CLI, tests)."""
    t1 = _tenant.set(tenant_id)
    t2 = _actor.set(actor)
    t3 = _principal.set(principal)
    try:
        yield
    finally:
        _principal.reset(t3)
        _actor.reset(t2)
        _tenant.reset(t1)
