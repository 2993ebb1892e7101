"""Identity endpoints: sessions, current user, users, roles, departments, teams, API keys."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response, status

from tessera.core import context
from tessera.core.access.permissions import CATALOGUE
from tessera.core.access.principal import Principal
from tessera.core.db.session import switch_tenant
from tessera.core.http import errors as http_errors
from tessera.core.http.deps import SESSION_COOKIE, DbSession, require
from tessera.core.http.errors import COMMON_ERRORS, error_responses
from tessera.core.http.listing import FilterField, FilterSet, ListQuery, Page, apply_listing, page_of
from tessera.core.identity import auth, errors, service
from tessera.core.identity.models import ApiKey, User
from tessera.core.identity.repository import (
    ApiKeyRepository,
    DepartmentRepository,
    RoleRepository,
    TeamRepository,
)
from tessera.core.identity.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    DepartmentCreate,
    DepartmentOut,
    DepartmentUpdate,
    LoginRequest,
    LoginResult,
    Me,
    MfaCode,
    MfaEnrolment,
    PasswordResetConfirm,
    PasswordResetRequest,
    PermissionOut,
    RecoveryCodes,
    RoleCreate,
    RoleOut,
    RoleUpdate,
    TeamCreate,
    TeamOut,
    TeamUpdate,
    UnmaskRequest,
    UserCreate,
    UserOut,
    UserUpdate,
)
from tessera.core.tenancy import service as tenancy
from tessera.core.tenancy.models import Tenant
from tessera.settings import get_settings

router = APIRouter(prefix="/v1", responses=COMMON_ERRORS)
R404 = error_responses(404)
R409 = error_responses(404, 409)

Admin = Annotated[Principal, Depends(require("admin:users"))]
UsersRead = Annotated[Principal, Depends(require("users:read"))]
RolesAdmin = Annotated[Principal, Depends(require("admin:roles"))]
DeptAdmin = Annotated[Principal, Depends(require("admin:departments"))]
KeysAdmin = Annotated[Principal, Depends(require("admin:api_keys"))]
Anyone = Annotated[Principal, Depends(require())]
MfaPending = Annotated[Principal, Depends(require(allow_mfa_pending=True))]

USER_FILTERS = FilterSet(
    fields={
        "status": FilterField(User.status, choices=("active", "invited", "disabled")),
        "role_id": FilterField(User.role_id, kind=uuid.UUID),
        "department_id": FilterField(User.department_id, kind=uuid.UUID),
        "email": FilterField(User.email, operators=("eq", "contains")),
        "name": FilterField(User.name, operators=("eq", "contains")),
    },
    sortable={"created_at": User.created_at, "name": User.name, "email": User.email},
    id_column=User.id,
)
KEY_FILTERS = FilterSet(fields={}, sortable={"created_at": ApiKey.created_at}, id_column=ApiKey.id)


def _cookie(response: Response, value: str) -> None:
    s = get_settings()
    response.set_cookie(
        SESSION_COOKIE,
        value,
        httponly=True,
        samesite="lax",
        secure=s.cookie_secure,
        max_age=s.session_absolute_hours * 3600,
        path="/",
    )


# --- sessions --------------------------------------------------------------------------------


@router.post(
    "/sessions", tags=["sessions"], response_model=LoginResult, responses=error_responses(401, 403, 422)
)
async def login(body: LoginRequest, request: Request, response: Response, session: DbSession) -> LoginResult:
    """Sign in with workspace (tenant slug), email and password; sets the session cookie."""
    tenant = await tenancy.get_by_slug(session, body.workspace)
    if tenant is None:
        raise errors.InvalidCredentials()
    if tenant.status != "active":
        raise http_errors.TenantSuspended(f"tenant '{tenant.slug}' is {tenant.status}")
    await switch_tenant(session, tenant.id)
    req = context.current_request()
    user, row, cookie_value = await auth.login(
        session, body.email, body.password, ip=req.ip, user_agent=req.user_agent
    )
    _cookie(response, cookie_value)
    return LoginResult(
        mfa_required=not row.mfa_passed, user=UserOut.model_validate(user), csrf_token=row.csrf_token
    )


@router.post("/sessions/mfa", tags=["sessions"], status_code=204, responses=error_responses(422))
async def verify_mfa(body: MfaCode, principal: MfaPending, session: DbSession) -> None:
    """Complete a sign-in with a TOTP or recovery code."""
    if principal.user_id is None or principal.session_id is None:
        raise http_errors.Forbidden("two-factor verification completes a console sign-in")
    await auth.mfa_verify(session, principal.user_id, principal.session_id, body.code)


@router.delete("/sessions/current", tags=["sessions"], status_code=204)
async def logout(principal: MfaPending, session: DbSession, response: Response) -> None:
    if principal.session_id:
        await auth.logout(session, principal.session_id)
    response.delete_cookie(SESSION_COOKIE, path="/")


@router.post("/password-resets", tags=["sessions"], status_code=202, responses=error_responses(422))
async def request_reset(body: PasswordResetRequest, request: Request, session: DbSession) -> dict[str, str]:
    """Email a reset link. Answers 202 whether or not the account exists."""
    tenant = await tenancy.get_by_slug(session, body.workspace)
    if tenant is not None and tenant.status == "active":
        await switch_tenant(session, tenant.id)
        base = get_settings().public_url or str(request.base_url).rstrip("/")
        await auth.request_password_reset(session, body.email, base)
    return {"status": "accepted"}


@router.post("/password-resets/confirm", tags=["sessions"], status_code=204, responses=error_responses(422))
async def confirm_reset(body: PasswordResetConfirm, session: DbSession) -> None:
    head = body.token.partition(".")[0]
    try:
        tenant_id = uuid.UUID(hex=head)
    except ValueError:
        raise errors.InvalidResetToken(field="token") from None
    tenant = await session.get(Tenant, tenant_id)
    if tenant is None or tenant.status != "active":
        raise errors.InvalidResetToken(field="token")
    await switch_tenant(session, tenant_id)
    await auth.confirm_password_reset(session, body.token, body.password)


# --- current user ----------------------------------------------------------------------------


@router.get("/me", tags=["me"], response_model=Me)
async def me(principal: MfaPending, session: DbSession) -> Me:
    user = await service.get_user(session, principal.user_id) if principal.user_id else None
    return Me(
        user=UserOut.model_validate(user) if user else None,
        tenant_id=principal.tenant_id,
        role=principal.role_key,
        permissions=sorted(principal.permissions),
        api_key_id=principal.api_key_id,
    )


@router.post("/me/mfa/enrol", tags=["me"], response_model=MfaEnrolment)
async def mfa_enrol(principal: Anyone, session: DbSession) -> MfaEnrolment:
    """Start TOTP enrolment: returns the secret and an otpauth:// URI for an authenticator app."""
    if principal.user_id is None:
        raise http_errors.Forbidden("only users can enrol two-factor authentication")
    tenant = await tenancy.get_tenant(session, principal.tenant_id)
    secret, uri = await auth.mfa_enrol(session, principal.user_id, tenant.slug)
    return MfaEnrolment(secret=secret, otpauth_uri=uri)


@router.post("/me/mfa/activate", tags=["me"], response_model=RecoveryCodes, responses=error_responses(422))
async def mfa_activate(body: MfaCode, principal: Anyone, session: DbSession) -> RecoveryCodes:
    """Confirm enrolment with a first code; returns ten one-time recovery codes (shown once)."""
    if principal.user_id is None:
        raise http_errors.Forbidden("only users can enrol two-factor authentication")
    return RecoveryCodes(recovery_codes=await auth.mfa_activate(session, principal.user_id, body.code))


# --- users -----------------------------------------------------------------------------------


@router.get("/users", tags=["users"], response_model=Page[UserOut])
async def list_users(request: Request, principal: UsersRead, session: DbSession) -> Page[UserOut]:
    """List users. Filters: `status`, `role_id`, `department_id`, `email__contains`, `name__contains`."""
    q = ListQuery.from_params(request.query_params, USER_FILTERS)
    from sqlalchemy import select

    rows = (await session.execute(apply_listing(select(User), q, USER_FILTERS))).scalars().all()
    items, cursor = page_of(rows, q, USER_FILTERS)
    return Page[UserOut](items=[UserOut.model_validate(u) for u in items], next_cursor=cursor)


@router.post("/users", tags=["users"], response_model=UserOut, status_code=201, responses=R409)
async def create_user(body: UserCreate, principal: Admin, session: DbSession, request: Request) -> UserOut:
    """Create a user. Without a password the user is invited and emailed a link to set one."""
    tenant = await tenancy.get_tenant(session, principal.tenant_id)
    user = await service.create_user(session, body, region=tenant.default_region)
    if body.password is None:
        base = get_settings().public_url or str(request.base_url).rstrip("/")
        await auth.request_password_reset(session, user.email, base)
    return UserOut.model_validate(user)


@router.get("/users/{user_id}", tags=["users"], response_model=UserOut, responses=R404)
async def get_user(user_id: uuid.UUID, principal: UsersRead, session: DbSession) -> UserOut:
    return UserOut.model_validate(await service.read_user(session, user_id))


@router.patch("/users/{user_id}", tags=["users"], response_model=UserOut, responses=R404)
async def update_user(user_id: uuid.UUID, body: UserUpdate, principal: Admin, session: DbSession) -> UserOut:
    tenant = await tenancy.get_tenant(session, principal.tenant_id)
    return UserOut.model_validate(
        await service.update_user(session, user_id, body, region=tenant.default_region)
    )


@router.post("/users/{user_id}/disable", tags=["users"], response_model=UserOut, responses=R404)
async def disable_user(user_id: uuid.UUID, principal: Admin, session: DbSession) -> UserOut:
    return UserOut.model_validate(await service.set_user_status(session, user_id, "disabled"))


@router.post(
    "/users/{user_id}/enable", tags=["users"], response_model=UserOut, responses=error_responses(402, 404)
)
async def enable_user(user_id: uuid.UUID, principal: Admin, session: DbSession) -> UserOut:
    return UserOut.model_validate(await service.set_user_status(session, user_id, "active"))


@router.post("/users/{user_id}/reset-mfa", tags=["users"], response_model=UserOut, responses=R404)
async def reset_mfa(user_id: uuid.UUID, principal: Admin, session: DbSession) -> UserOut:
    return UserOut.model_validate(await service.reset_user_mfa(session, user_id))


@router.post("/users/{user_id}/unmask", tags=["users"], responses=R404)
async def unmask_user(
    user_id: uuid.UUID,
    body: UnmaskRequest,
    principal: Annotated[Principal, Depends(require("pii:unmask"))],
    session: DbSession,
) -> dict[str, Any]:
    """Reveal masked fields of one user; writes a `pii.unmask` audit row."""
    return await service.unmask_user(session, user_id, list(body.fields))


# --- roles -----------------------------------------------------------------------------------


@router.get("/permissions", tags=["roles"], response_model=list[PermissionOut])
async def list_permissions(principal: Anyone) -> list[PermissionOut]:
    return [PermissionOut(name=k, description=v) for k, v in sorted(CATALOGUE.items())]


@router.get("/roles", tags=["roles"], response_model=list[RoleOut])
async def list_roles(principal: UsersRead, session: DbSession) -> list[RoleOut]:
    return [RoleOut.model_validate(r) for r in await RoleRepository(session).all_roles()]


@router.post("/roles", tags=["roles"], response_model=RoleOut, status_code=201, responses=R409)
async def create_role(body: RoleCreate, principal: RolesAdmin, session: DbSession) -> RoleOut:
    return RoleOut.model_validate(await service.create_role(session, body))


@router.get("/roles/{role_id}", tags=["roles"], response_model=RoleOut, responses=R404)
async def get_role(role_id: uuid.UUID, principal: UsersRead, session: DbSession) -> RoleOut:
    return RoleOut.model_validate(await service.get_role(session, role_id))


@router.patch("/roles/{role_id}", tags=["roles"], response_model=RoleOut, responses=R404)
async def update_role(
    role_id: uuid.UUID, body: RoleUpdate, principal: RolesAdmin, session: DbSession
) -> RoleOut:
    return RoleOut.model_validate(await service.update_role(session, role_id, body))


@router.delete("/roles/{role_id}", tags=["roles"], status_code=204, responses=R409)
async def delete_role(role_id: uuid.UUID, principal: RolesAdmin, session: DbSession) -> None:
    await service.delete_role(session, role_id)


# --- departments and teams -------------------------------------------------------------------


@router.get("/departments", tags=["departments"], response_model=list[DepartmentOut])
async def list_departments(principal: UsersRead, session: DbSession) -> list[DepartmentOut]:
    """The whole tree, parents before children (ordered by path)."""
    return [DepartmentOut.model_validate(d) for d in await DepartmentRepository(session).all_ordered()]


@router.post(
    "/departments", tags=["departments"], response_model=DepartmentOut, status_code=201, responses=R404
)
async def create_department(
    body: DepartmentCreate, principal: DeptAdmin, session: DbSession
) -> DepartmentOut:
    return DepartmentOut.model_validate(await service.create_department(session, body))


@router.get(
    "/departments/{department_id}", tags=["departments"], response_model=DepartmentOut, responses=R404
)
async def get_department(department_id: uuid.UUID, principal: UsersRead, session: DbSession) -> DepartmentOut:
    return DepartmentOut.model_validate(await service.get_department(session, department_id))


@router.patch(
    "/departments/{department_id}", tags=["departments"], response_model=DepartmentOut, responses=R404
)
async def update_department(
    department_id: uuid.UUID, body: DepartmentUpdate, principal: DeptAdmin, session: DbSession
) -> DepartmentOut:
    return DepartmentOut.model_validate(await service.update_department(session, department_id, body))


@router.delete("/departments/{department_id}", tags=["departments"], status_code=204, responses=R409)
async def delete_department(department_id: uuid.UUID, principal: DeptAdmin, session: DbSession) -> None:
    await service.delete_department(session, department_id)


async def _team_out(session: DbSession, team: Any) -> TeamOut:
    out = TeamOut.model_validate(team)
    out.member_ids = await TeamRepository(session).member_ids(team.id)
    return out


@router.get("/teams", tags=["teams"], response_model=list[TeamOut])
async def list_teams(principal: UsersRead, session: DbSession) -> list[TeamOut]:
    repo = TeamRepository(session)
    return [await _team_out(session, t) for t in await repo.all(repo.select().order_by(repo.model.name))]


@router.post("/teams", tags=["teams"], response_model=TeamOut, status_code=201, responses=R409)
async def create_team(body: TeamCreate, principal: DeptAdmin, session: DbSession) -> TeamOut:
    return await _team_out(session, await service.create_team(session, body))


@router.get("/teams/{team_id}", tags=["teams"], response_model=TeamOut, responses=R404)
async def get_team(team_id: uuid.UUID, principal: UsersRead, session: DbSession) -> TeamOut:
    return await _team_out(session, await service.get_team(session, team_id))


@router.patch("/teams/{team_id}", tags=["teams"], response_model=TeamOut, responses=R409)
async def update_team(
    team_id: uuid.UUID, body: TeamUpdate, principal: DeptAdmin, session: DbSession
) -> TeamOut:
    return await _team_out(session, await service.update_team(session, team_id, body))


@router.delete("/teams/{team_id}", tags=["teams"], status_code=204, responses=R404)
async def delete_team(team_id: uuid.UUID, principal: DeptAdmin, session: DbSession) -> None:
    await service.delete_team(session, team_id)


# --- API keys --------------------------------------------------------------------------------


@router.get("/api-keys", tags=["api-keys"], response_model=Page[ApiKeyOut])
async def list_api_keys(request: Request, principal: KeysAdmin, session: DbSession) -> Page[ApiKeyOut]:
    q = ListQuery.from_params(request.query_params, KEY_FILTERS)
    repo = ApiKeyRepository(session)
    rows = await repo.all(apply_listing(repo.select(), q, KEY_FILTERS))
    items, cursor = page_of(rows, q, KEY_FILTERS)
    return Page[ApiKeyOut](items=[ApiKeyOut.model_validate(k) for k in items], next_cursor=cursor)


@router.post(
    "/api-keys",
    tags=["api-keys"],
    response_model=ApiKeyCreated,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(403, 422),
)
async def create_api_key(body: ApiKeyCreate, principal: KeysAdmin, session: DbSession) -> ApiKeyCreated:
    """Create an API key. The secret `key` is in this response only; store it now."""
    key, raw = await auth.create_api_key(session, body, principal)
    return ApiKeyCreated(**ApiKeyOut.model_validate(key).model_dump(), key=raw)


@router.delete("/api-keys/{key_id}", tags=["api-keys"], response_model=ApiKeyOut, responses=R404)
async def revoke_api_key(key_id: uuid.UUID, principal: KeysAdmin, session: DbSession) -> ApiKeyOut:
    """Revoke a key; it stops working at once."""
    return ApiKeyOut.model_validate(await auth.revoke_api_key(session, key_id))
