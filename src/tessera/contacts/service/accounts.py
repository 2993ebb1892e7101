"""Account use cases."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts.errors import AccountNotFound
from tessera.contacts.models import Account
from tessera.contacts.repository import AccountRepository
from tessera.contacts.schemas import AccountCreate, AccountUpdate
from tessera.contacts.service.fields import validate_attributes
from tessera.core.access.principal import Principal
from tessera.core.access.visibility import visible_owner_clause
from tessera.core.audit import service as audit
from tessera.core.http.errors import InvalidInput
from tessera.core.identity import service as identity

FIELDS = ("name", "industry", "size", "region", "parent_id", "owner_id", "attributes")


def _snap(a: Account) -> dict[str, Any]:
    return {f: getattr(a, f) for f in FIELDS}


async def get_account(
    session: AsyncSession, account_id: uuid.UUID, principal: Principal | None = None
) -> Account:
    repo = AccountRepository(session)
    stmt = repo.select().where(Account.id == account_id)
    if principal is not None:
        stmt = stmt.where(visible_owner_clause(Account.owner_id, principal, "accounts"))
    acc = await repo.one_or_none(stmt)
    if acc is None:
        raise AccountNotFound(field="account_id")
    return acc


async def _check_parent(
    session: AsyncSession, parent_id: uuid.UUID | None, self_id: uuid.UUID | None
) -> None:
    if parent_id is None:
        return
    repo = AccountRepository(session)
    seen = {self_id} if self_id else set()
    cur: uuid.UUID | None = parent_id
    while cur is not None:
        if cur in seen:
            raise InvalidInput("the parent account would create a cycle", field="parent_id")
        seen.add(cur)
        acc = await repo.get(cur)
        if acc is None:
            raise AccountNotFound("the parent account does not exist", field="parent_id")
        cur = acc.parent_id


async def create_account(session: AsyncSession, data: AccountCreate) -> Account:
    await _check_parent(session, data.parent_id, None)
    await identity.ensure_user(session, data.owner_id, field="owner_id")
    attrs = await validate_attributes(session, "account", data.attributes, partial=False)
    acc = await AccountRepository(session).create(Account(**{**data.model_dump(), "attributes": attrs}))
    await audit.record(session, "account.create", "account", acc.id, after=_snap(acc))
    return acc


async def update_account(
    session: AsyncSession, account_id: uuid.UUID, data: AccountUpdate, principal: Principal | None = None
) -> Account:
    acc = await get_account(session, account_id, principal)
    before = _snap(acc)
    changes = data.model_dump(exclude_unset=True)
    if "parent_id" in changes:
        await _check_parent(session, changes["parent_id"], acc.id)
    await identity.ensure_user(session, changes.get("owner_id"), field="owner_id")
    if changes.get("attributes") is not None:
        changes["attributes"] = await validate_attributes(
            session, "account", {**acc.attributes, **changes["attributes"]}, partial=False
        )
    for k, v in changes.items():
        if v is None and k in ("name", "attributes"):
            continue
        setattr(acc, k, v)
    await session.flush()
    await audit.record(session, "account.update", "account", acc.id, before=before, after=_snap(acc))
    return acc


async def delete_account(
    session: AsyncSession, account_id: uuid.UUID, principal: Principal | None = None
) -> None:
    acc = await get_account(session, account_id, principal)
    await AccountRepository(session).delete(acc)
    await audit.record(session, "account.delete", "account", account_id, before=_snap(acc))
