"""Use cases of users, roles, departments and teams. Services never commit."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.access.permissions import BUILTIN_ROLES, CATALOGUE
from tessera.core.audit import service as audit
from tessera.core.crypto.types import blind_index
from tessera.core.db.base import utcnow, uuid7
from tessera.core.identity import errors
from tessera.core.identity.models import Department, Role, Team, User
from tessera.core.identity.passwords import MIN_PASSWORD_LENGTH, hash_password
from tessera.core.identity.repository import (
    AuthSessionRepository,
    DepartmentRepository,
    RoleRepository,
    TeamRepository,
    UserRepository,
)
from tessera.core.identity.schemas import (
    DepartmentCreate,
    DepartmentUpdate,
    RoleCreate,
    RoleUpdate,
    TeamCreate,
    TeamUpdate,
    UserCreate,
    UserUpdate,
)
from tessera.core.phone import normalize_phone

# Seat limits are enforced by the subscription kernel when present; it installs this hook.
seat_check_hooks: list[Any] = []
principal_cache_invalidators: list[Any] = []


def _invalidate_principals() -> None:
    for fn in principal_cache_invalidators:
        fn()


def user_snapshot(u: User) -> dict[str, Any]:
    return {
        "email": u.email,
        "name": u.name,
        "phone": u.phone,
        "locale": u.locale,
        "status": u.status,
        "role_id": u.role_id,
        "department_id": u.department_id,
        "totp_enabled": u.totp_enabled,
    }


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise errors.WeakPassword(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters", field="password"
        )


async def seed_builtin_roles(session: AsyncSession) -> dict[str, Role]:
    roles = {}
    for br in BUILTIN_ROLES:
        role = Role(
            key=br.key,
            name=br.name,
            description=br.description,
            builtin=True,
            permissions=list(br.permissions),
            visibility=dict(br.visibility),
        )
        session.add(role)
        roles[br.key] = role
    await session.flush()
    return roles


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await UserRepository(session).get(user_id)
    if user is None:
        raise errors.UserNotFound()
    return user


async def read_user(session: AsyncSession, user_id: uuid.UUID) -> User:
    """A user to show (:meth:`Repository.read`: possibly detached; use :func:`get_user` to modify)."""
    user = await UserRepository(session).read(user_id)
    if user is None:
        raise errors.UserNotFound()
    return user


async def ensure_user(session: AsyncSession, user_id: uuid.UUID | None, *, field: str) -> None:
    """Refuse a reference to a user that does not exist in the tenant (422-style, naming ``field``)."""
    if user_id is not None and await UserRepository(session).get(user_id) is None:
        raise errors.UserNotFound("the user does not exist", field=field)


async def _resolve_role(session: AsyncSession, role_id: uuid.UUID | None) -> Role:
    repo = RoleRepository(session)
    role = await (repo.get(role_id) if role_id else repo.by_key("member"))
    if role is None:
        raise errors.RoleNotFound(field="role_id")
    return role


async def _check_department(session: AsyncSession, department_id: uuid.UUID | None) -> None:
    if department_id and await DepartmentRepository(session).get(department_id) is None:
        raise errors.DepartmentNotFound(field="department_id")


async def create_user(session: AsyncSession, data: UserCreate, *, region: str = "CN") -> User:
    repo = UserRepository(session)
    email = data.email.lower()
    if await repo.by_email(email):
        raise errors.DuplicateEmail(field="email")
    role = await _resolve_role(session, data.role_id)
    await _check_department(session, data.department_id)
    for hook in seat_check_hooks:
        await hook(session, 1)
    phone = normalize_phone(data.phone, region) if data.phone else None
    if data.password is not None:
        check_password(data.password)
    user = User(
        email=email,
        name=data.name,
        phone=phone,
        phone_index=blind_index("phone", phone) if phone else None,
        locale=data.locale,
        status="active" if data.password else "invited",
        password_hash=hash_password(data.password) if data.password else None,
        role_id=role.id,
        department_id=data.department_id,
    )
    await repo.create(user)
    await audit.record(session, "user.create", "user", user.id, after=user_snapshot(user))
    return user


async def update_user(
    session: AsyncSession, user_id: uuid.UUID, data: UserUpdate, *, region: str = "CN"
) -> User:
    user = await get_user(session, user_id)
    before = user_snapshot(user)
    fields = data.model_dump(exclude_unset=True)
    if "role_id" in fields:
        role = await _resolve_role(session, fields["role_id"])
        user.role_id = role.id
    if "department_id" in fields:
        await _check_department(session, fields["department_id"])
        user.department_id = fields["department_id"]
    if "phone" in fields:
        phone = normalize_phone(fields["phone"], region) if fields["phone"] else None
        user.phone = phone
        user.phone_index = blind_index("phone", phone) if phone else None
    if fields.get("name"):
        user.name = fields["name"]
    if "locale" in fields:
        user.locale = fields["locale"]
    await session.flush()
    await audit.record(session, "user.update", "user", user.id, before=before, after=user_snapshot(user))
    _invalidate_principals()
    return user


async def set_user_status(session: AsyncSession, user_id: uuid.UUID, status: str) -> User:
    user = await get_user(session, user_id)
    actor = context.current_actor()
    if status == "disabled" and actor.kind == "user" and actor.id == user.id:
        raise errors.InvalidInput("you cannot disable yourself", field="id")
    if status == "active" and user.status == "disabled":
        for hook in seat_check_hooks:
            await hook(session, 1)
    before = user_snapshot(user)
    user.status = status if (status != "active" or user.password_hash) else "invited"
    await session.flush()
    if status == "disabled":
        await AuthSessionRepository(session).revoke_all_for(user.id, utcnow())
    await audit.record(
        session,
        f"user.{'disable' if status == 'disabled' else 'enable'}",
        "user",
        user.id,
        before=before,
        after=user_snapshot(user),
    )
    _invalidate_principals()
    return user


async def reset_user_mfa(session: AsyncSession, user_id: uuid.UUID) -> User:
    user = await get_user(session, user_id)
    before = user_snapshot(user)
    user.totp_enabled = False
    user.totp_secret = None
    user.recovery_codes = []
    await session.flush()
    await audit.record(session, "user.mfa_reset", "user", user.id, before=before, after=user_snapshot(user))
    return user


async def unmask_user(session: AsyncSession, user_id: uuid.UUID, fields: list[str]) -> dict[str, Any]:
    user = await get_user(session, user_id)
    values = {f: getattr(user, f) for f in fields}
    await audit.record(session, "pii.unmask", "user", user.id, changes={"fields": sorted(fields)})
    return values


# --- roles -------------------------------------------------------------------------------


def _check_permissions(perms: list[str]) -> list[str]:
    for p in perms:
        if p == "*" or p.endswith(":*"):
            continue
        if p not in CATALOGUE:
            raise errors.UnknownPermission(f"unknown permission '{p}'", field="permissions")
    return sorted(set(perms))


def role_snapshot(r: Role) -> dict[str, Any]:
    return {"key": r.key, "name": r.name, "permissions": r.permissions, "visibility": r.visibility}


async def get_role(session: AsyncSession, role_id: uuid.UUID) -> Role:
    role = await RoleRepository(session).get(role_id)
    if role is None:
        raise errors.RoleNotFound()
    return role


async def create_role(session: AsyncSession, data: RoleCreate) -> Role:
    repo = RoleRepository(session)
    if await repo.by_key(data.key):
        raise errors.Conflict("a role with this key already exists", field="key")
    role = Role(
        key=data.key,
        name=data.name,
        description=data.description,
        builtin=False,
        permissions=_check_permissions(data.permissions),
        visibility=dict(data.visibility),
    )
    await repo.create(role)
    await audit.record(session, "role.create", "role", role.id, after=role_snapshot(role))
    return role


async def update_role(session: AsyncSession, role_id: uuid.UUID, data: RoleUpdate) -> Role:
    role = await get_role(session, role_id)
    if role.builtin:
        raise errors.BuiltinRoleReadOnly()
    before = role_snapshot(role)
    fields = data.model_dump(exclude_unset=True)
    if fields.get("name"):
        role.name = fields["name"]
    if fields.get("description") is not None:
        role.description = fields["description"]
    if fields.get("permissions") is not None:
        role.permissions = _check_permissions(fields["permissions"])
    if fields.get("visibility") is not None:
        role.visibility = dict(fields["visibility"])
    await session.flush()
    await audit.record(session, "role.update", "role", role.id, before=before, after=role_snapshot(role))
    _invalidate_principals()
    return role


async def delete_role(session: AsyncSession, role_id: uuid.UUID) -> None:
    role = await get_role(session, role_id)
    if role.builtin:
        raise errors.BuiltinRoleReadOnly()
    if await UserRepository(session).count_with_role(role.id):
        raise errors.RoleInUse()
    before = role_snapshot(role)
    await RoleRepository(session).delete(role)
    await audit.record(session, "role.delete", "role", role_id, before=before)


# --- departments -------------------------------------------------------------------------


async def get_department(session: AsyncSession, department_id: uuid.UUID) -> Department:
    dep = await DepartmentRepository(session).get(department_id)
    if dep is None:
        raise errors.DepartmentNotFound()
    return dep


async def create_department(session: AsyncSession, data: DepartmentCreate) -> Department:
    parent_path = "/"
    if data.parent_id:
        parent = await DepartmentRepository(session).get(data.parent_id)
        if parent is None:
            raise errors.DepartmentNotFound(field="parent_id")
        parent_path = parent.path
    dep = Department(name=data.name, parent_id=data.parent_id, path="")
    dep.id = uuid7()
    dep.path = f"{parent_path}{dep.id.hex}/"
    await DepartmentRepository(session).create(dep)
    await audit.record(
        session,
        "department.create",
        "department",
        dep.id,
        after={"name": dep.name, "parent_id": dep.parent_id},
    )
    return dep


async def update_department(
    session: AsyncSession, department_id: uuid.UUID, data: DepartmentUpdate
) -> Department:
    repo = DepartmentRepository(session)
    dep = await get_department(session, department_id)
    before = {"name": dep.name, "parent_id": dep.parent_id}
    fields = data.model_dump(exclude_unset=True)
    if fields.get("name"):
        dep.name = fields["name"]
    if "parent_id" in fields and fields["parent_id"] != dep.parent_id:
        new_parent_path = "/"
        if fields["parent_id"]:
            parent = await repo.get(fields["parent_id"])
            if parent is None:
                raise errors.DepartmentNotFound(field="parent_id")
            if parent.path.startswith(dep.path):
                raise errors.DepartmentCycle(field="parent_id")
            new_parent_path = parent.path
        old_path = dep.path
        new_path = f"{new_parent_path}{dep.id.hex}/"
        for node in await repo.subtree(old_path):
            node.path = new_path + node.path[len(old_path) :]
        dep.parent_id = fields["parent_id"]
    await session.flush()
    await audit.record(
        session,
        "department.update",
        "department",
        dep.id,
        before=before,
        after={"name": dep.name, "parent_id": dep.parent_id},
    )
    _invalidate_principals()
    return dep


async def delete_department(session: AsyncSession, department_id: uuid.UUID) -> None:
    repo = DepartmentRepository(session)
    dep = await get_department(session, department_id)
    if await repo.children_count(dep.id) or await UserRepository(session).count_in_department(dep.id):
        raise errors.DepartmentNotEmpty()
    await repo.delete(dep)
    await audit.record(
        session,
        "department.delete",
        "department",
        department_id,
        before={"name": dep.name, "parent_id": dep.parent_id},
    )


# --- teams -------------------------------------------------------------------------------


async def get_team(session: AsyncSession, team_id: uuid.UUID) -> Team:
    team = await TeamRepository(session).get(team_id)
    if team is None:
        raise errors.TeamNotFound()
    return team


async def _check_members(session: AsyncSession, member_ids: list[uuid.UUID]) -> None:
    found = await UserRepository(session).get_many(member_ids)
    if len({u.id for u in found}) != len(set(member_ids)):
        raise errors.UserNotFound("one or more members do not exist", field="member_ids")


async def create_team(session: AsyncSession, data: TeamCreate) -> Team:
    repo = TeamRepository(session)
    if await repo.by_name(data.name):
        raise errors.DuplicateTeam(field="name")
    await _check_department(session, data.department_id)
    await _check_members(session, data.member_ids)
    team = await repo.create(Team(name=data.name, department_id=data.department_id))
    await repo.set_members(team.id, data.member_ids)
    await audit.record(
        session,
        "team.create",
        "team",
        team.id,
        after={"name": team.name, "members": [str(m) for m in data.member_ids]},
    )
    _invalidate_principals()
    return team


async def update_team(session: AsyncSession, team_id: uuid.UUID, data: TeamUpdate) -> Team:
    repo = TeamRepository(session)
    team = await get_team(session, team_id)
    before = {
        "name": team.name,
        "department_id": team.department_id,
        "members": [str(m) for m in await repo.member_ids(team.id)],
    }
    fields = data.model_dump(exclude_unset=True)
    if fields.get("name") and fields["name"] != team.name:
        if await repo.by_name(fields["name"]):
            raise errors.DuplicateTeam(field="name")
        team.name = fields["name"]
    if "department_id" in fields:
        await _check_department(session, fields["department_id"])
        team.department_id = fields["department_id"]
    if fields.get("member_ids") is not None:
        await _check_members(session, fields["member_ids"])
        await repo.set_members(team.id, fields["member_ids"])
    await session.flush()
    after = {
        "name": team.name,
        "department_id": team.department_id,
        "members": [str(m) for m in await repo.member_ids(team.id)],
    }
    await audit.record(session, "team.update", "team", team.id, before=before, after=after)
    _invalidate_principals()
    return team


async def delete_team(session: AsyncSession, team_id: uuid.UUID) -> None:
    team = await get_team(session, team_id)
    await TeamRepository(session).delete(team)
    await audit.record(session, "team.delete", "team", team_id, before={"name": team.name})
    _invalidate_principals()
