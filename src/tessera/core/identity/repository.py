"""Every query of the identity kernel."""

from __future__ import annotations

import uuid

from sqlalchemy import select, update

from tessera.core.db.repository import TenantRepository
from tessera.core.identity.models import (
    ApiKey,
    AuthSession,
    Department,
    PasswordResetToken,
    Role,
    Team,
    TeamMember,
    User,
)


class UserRepository(TenantRepository[User]):
    model = User

    async def by_email(self, email: str) -> User | None:
        return await self.one_or_none(self.select().where(User.email == email))

    async def count_active(self) -> int:
        return await self.count(self.select().where(User.status != "disabled"))

    async def count_with_role(self, role_id: uuid.UUID) -> int:
        return await self.count(self.select().where(User.role_id == role_id))

    async def count_in_department(self, department_id: uuid.UUID) -> int:
        return await self.count(self.select().where(User.department_id == department_id))

    async def record_failure(self, user: User, max_failures: int, locked_until: object) -> None:
        user.failed_logins += 1
        if user.failed_logins >= max_failures:
            user.locked_until = locked_until  # type: ignore[assignment]
        await self.session.flush()


class RoleRepository(TenantRepository[Role]):
    model = Role

    async def by_key(self, key: str) -> Role | None:
        return await self.one_or_none(self.select().where(Role.key == key))

    async def all_roles(self) -> list[Role]:
        return await self.all(self.select().order_by(Role.builtin.desc(), Role.name))


class DepartmentRepository(TenantRepository[Department]):
    model = Department

    async def children_count(self, department_id: uuid.UUID) -> int:
        return await self.count(self.select().where(Department.parent_id == department_id))

    async def subtree(self, path: str) -> list[Department]:
        return await self.all(self.select().where(Department.path.startswith(path)))

    async def all_ordered(self) -> list[Department]:
        return await self.all(self.select().order_by(Department.path))


class TeamRepository(TenantRepository[Team]):
    model = Team

    async def by_name(self, name: str) -> Team | None:
        return await self.one_or_none(self.select().where(Team.name == name))

    async def member_ids(self, team_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await self.session.execute(select(TeamMember.user_id).where(TeamMember.team_id == team_id))
        return list(rows.scalars())

    async def team_ids_of(self, user_id: uuid.UUID) -> list[uuid.UUID]:
        rows = await self.session.execute(select(TeamMember.team_id).where(TeamMember.user_id == user_id))
        return list(rows.scalars())

    async def set_members(self, team_id: uuid.UUID, user_ids: list[uuid.UUID]) -> None:
        existing = await self.session.execute(select(TeamMember).where(TeamMember.team_id == team_id))
        for m in existing.scalars():
            await self.session.delete(m)
        await self.session.flush()
        for uid in dict.fromkeys(user_ids):
            self.session.add(TeamMember(team_id=team_id, user_id=uid))
        await self.session.flush()


class ApiKeyRepository(TenantRepository[ApiKey]):
    model = ApiKey

    async def by_prefix(self, prefix: str) -> ApiKey | None:
        return await self.one_or_none(self.select().where(ApiKey.prefix == prefix))

    async def touch(self, key_id: uuid.UUID, when: object) -> None:
        await self.session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))


class AuthSessionRepository(TenantRepository[AuthSession]):
    model = AuthSession

    async def by_token_hash(self, token_hash: str) -> AuthSession | None:
        return await self.one_or_none(self.select().where(AuthSession.token_hash == token_hash))

    async def revoke_all_for(self, user_id: uuid.UUID, when: object) -> None:
        await self.session.execute(
            update(AuthSession)
            .where(AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None))
            .values(revoked_at=when)
        )


class ResetTokenRepository(TenantRepository[PasswordResetToken]):
    model = PasswordResetToken

    async def by_token_hash(self, token_hash: str) -> PasswordResetToken | None:
        return await self.one_or_none(self.select().where(PasswordResetToken.token_hash == token_hash))
