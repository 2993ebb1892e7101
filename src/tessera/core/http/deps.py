"""FastAPI dependencies: the unit of work per request and authentication.

``Annotated[Principal, Depends(require("contacts:read"))]`` authenticates the caller (API
key or console session), puts its tenant in scope, refuses suspended tenants, checks CSRF
on cookie-authenticated writes, and checks the permission.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.base import SecurityBase
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.access.principal import OperatorPrincipal, Principal
from tessera.core.db.session import get_database, unit_of_work
from tessera.core.http.errors import CsrfFailed, Forbidden, TenantSuspended, Unauthenticated
from tessera.core.identity import auth
from tessera.core.identity.errors import MfaRequired
from tessera.core.identity.passwords import sha256_hex
from tessera.core.singleflight import SingleFlight
from tessera.core.tenancy.models import OperatorKey, Tenant

SESSION_COOKIE = "tessera_session"
bearer = HTTPBearer(auto_error=False, description="An API key: `tsk_…`; operators: `top_…`.")
cookie = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, description="Console session.")

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


_SESSION_KEY = "tessera.session"


async def get_session(request: Request) -> AsyncSession:
    """The request's unit of work: commits once after the endpoint, rolls back on error.

    It is entered on FastAPI's per-function exit stack, so it ends (commit, or rollback on
    error) when the endpoint has returned and its response is rendered, *before* the response
    is sent: a failed commit is reported to the client, and the client's next request sees its
    own write. (That is what a ``yield`` dependency with ``scope="function"`` does; as a plain
    dependency it skips FastAPI's per-request wrapping of generators, about a tenth of an
    authenticated read's CPU.) Every dependency asking for it in one request gets the same one.
    """
    scope = request.scope
    stack: AsyncExitStack = scope["fastapi_function_astack"]
    found: tuple[AsyncExitStack, AsyncSession] | None = scope.get(_SESSION_KEY)
    if found is not None and found[0] is stack:
        return found[1]
    session = await stack.enter_async_context(unit_of_work())
    scope[_SESSION_KEY] = (stack, session)
    return session


DbSession = Annotated[AsyncSession, Depends(get_session)]

_tenant_status: dict[uuid.UUID, tuple[float, str, str]] = {}
TENANT_STATUS_TTL = 5.0


def forget_tenant_status(tenant_id: uuid.UUID | None = None) -> None:
    if tenant_id is None:
        _tenant_status.clear()
    else:
        _tenant_status.pop(tenant_id, None)


_tenant_lookups: SingleFlight[uuid.UUID, tuple[str, str] | None] = SingleFlight()
_TENANT_STATUS_SQL = select(Tenant.status, Tenant.slug).where(Tenant.id == bindparam("tenant_id"))


async def tenant_status(tenant_id: uuid.UUID) -> tuple[str, str] | None:
    """(status, slug) of a tenant, cached for a few seconds.

    When the entry expires, the requests in flight for that tenant share one lookup instead
    of each opening a connection to ask the same question.
    """
    cached = _tenant_status.get(tenant_id)
    now = time.monotonic()
    if cached and now - cached[0] < TENANT_STATUS_TTL:
        return cached[1], cached[2]

    async def lookup() -> tuple[str, str] | None:
        async with get_database().engine.connect() as conn:
            row = (await conn.execute(_TENANT_STATUS_SQL, {"tenant_id": tenant_id})).first()
        result = (row[0], row[1]) if row is not None else None
        if result is not None:
            _tenant_status[tenant_id] = (now, result[0], result[1])
        return result

    return await _tenant_lookups.run(tenant_id, lookup)


def _credential(
    request: Request, creds: HTTPAuthorizationCredentials | None, cookie_value: str | None
) -> tuple[str, str]:
    if creds is not None and creds.credentials:
        return "key", creds.credentials
    if cookie_value:
        return "cookie", cookie_value
    raise Unauthenticated("send an API key as 'Authorization: Bearer <key>' or sign in")


async def _authenticate(
    request: Request,
    creds: HTTPAuthorizationCredentials | None,
    cookie_value: str | None,
    *,
    allow_mfa_pending: bool = False,
) -> Principal:
    """The caller's principal. The request's unit of work (:func:`get_session`) is opened only
    when the credential has to be looked up: a recently verified API key needs no database."""
    kind, raw = _credential(request, creds, cookie_value)
    cached: Principal | None = None
    if kind == "key":
        cached = auth.cached_api_key_principal(raw)
        if cached is not None:
            tenant_id = cached.tenant_id
        else:
            parsed = auth.parse_api_key(raw)
            if parsed is None:
                raise Unauthenticated("malformed API key")
            tenant_id = parsed.tenant_id
    else:
        pc = auth.parse_session_cookie(raw)
        if pc is None:
            raise Unauthenticated("malformed session cookie")
        tenant_id = pc[0]
    status = await tenant_status(tenant_id)
    if status is None:
        raise Unauthenticated("unknown tenant")
    if status[0] != "active":
        raise TenantSuspended(f"tenant '{status[1]}' is {status[0]}; contact your administrator")
    context.bind(tenant_id)
    if cached is not None:
        principal = cached
    elif kind == "key":
        principal = await auth.authenticate_api_key(await get_session(request), raw)
    else:
        principal = await auth.authenticate_session(await get_session(request), pc[1])  # type: ignore[index]
        if not principal.mfa_passed and not allow_mfa_pending:
            raise MfaRequired()
        if request.method not in SAFE_METHODS:
            sent = request.headers.get("x-csrf-token", "")
            if not principal.csrf_token or not secrets.compare_digest(sent, principal.csrf_token):
                raise CsrfFailed(field="X-CSRF-Token")
    context.bind(tenant_id, principal.actor, principal)
    request.state.principal = principal
    return principal


def require(
    *permissions: str, allow_mfa_pending: bool = False
) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """Dependency factory: authenticate and require every permission listed."""

    async def dependency(request: Request) -> Principal:
        # The two schemes are read here, not declared as sub-dependencies: FastAPI solves every
        # sub-dependency of every request (about 6 % of an authenticated read's CPU for these
        # two). ``document_auth`` puts them in the OpenAPI document as declared dependencies
        # would.
        creds = await bearer(request)
        cookie_value = await cookie(request)
        principal = await _authenticate(request, creds, cookie_value, allow_mfa_pending=allow_mfa_pending)
        for p in permissions:
            if not principal.has(p):
                raise Forbidden(f"this needs the '{p}' permission")
        return principal

    dependency.openapi_security = AUTH_SCHEMES  # type: ignore[attr-defined]
    return dependency


AUTH_SCHEMES: tuple[SecurityBase, ...] = (bearer, cookie)


def _auth_schemes(dependant: Any) -> tuple[SecurityBase, ...]:
    schemes: list[SecurityBase] = []
    for sub in dependant.dependencies:
        for scheme in (*getattr(sub.call, "openapi_security", ()), *_auth_schemes(sub)):
            if scheme not in schemes:
                schemes.append(scheme)
    return tuple(schemes)


def document_auth(app: FastAPI) -> None:
    """Give every operation authenticated by :func:`require` the security requirements (API
    key or console session) its declared sub-dependencies used to give it."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        cached = app.openapi_schema
        schema = generate()
        if schema is cached:  # already completed when it was generated
            return schema
        for route in iter_route_contexts(app.routes):
            if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
                continue
            schemes = _auth_schemes(route.dependant)
            if not schemes:
                continue
            item = schema["paths"][route.path_format]
            for method in route.methods or ():
                operation = item[method.lower()]
                security = operation.setdefault("security", [])
                for scheme in schemes:
                    if {scheme.scheme_name: []} not in security:
                        security.append({scheme.scheme_name: []})
            found = schema.setdefault("components", {}).setdefault("securitySchemes", {})
            for scheme in schemes:
                found[scheme.scheme_name] = scheme.model.model_dump(
                    mode="json", by_alias=True, exclude_none=True
                )
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


async def require_operator(
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> OperatorPrincipal:
    """Platform operators authenticate with ``top_<id>_<secret>`` keys."""
    if creds is None or not creds.credentials.startswith("top_"):
        raise Unauthenticated("operator endpoints need an operator key")
    parts = creds.credentials.split("_")
    if len(parts) != 3:
        raise Unauthenticated("malformed operator key")
    async with unit_of_work(platform=True) as s:
        key = (
            await s.execute(select(OperatorKey).where(OperatorKey.prefix == f"top_{parts[1]}"))
        ).scalar_one_or_none()
        if (
            key is None
            or key.revoked_at is not None
            or not secrets.compare_digest(key.secret_hash, sha256_hex(parts[2]))
        ):
            raise Unauthenticated("invalid operator key")
        op = OperatorPrincipal(operator_id=uuid.UUID(key.operator_id), email=key.name)
    context.bind(None, op.actor)
    return op
