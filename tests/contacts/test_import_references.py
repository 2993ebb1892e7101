"""The bulk import's foreign keys: on PostgreSQL the rows of new contacts are checked once per
chunk (the tenant) instead of per row; identities of contacts met before keep the per-row checks,
so a reference that is not there is never let through."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tests.conftest import TenantWorld


def _rows(contact_ids: list[str], identity_owners: list[str]) -> tuple[list[tuple], list[tuple]]:
    from tessera.contacts.importer import uuid7_hex
    from tessera.core.db.base import utcnow

    now = utcnow()
    contacts = [
        (cid, now, now, f"c{n}", None, None, None, None, None, None, None, "import", "lead", {}, None)
        for n, cid in enumerate(contact_ids)
    ]
    ids = uuid7_hex(len(identity_owners))
    idents = [
        (iid, owner, "email", "sealed", uuid.uuid4().hex, True, now)
        for iid, owner in zip(ids, identity_owners, strict=True)
    ]
    return contacts, idents


async def _insert(tenant_id: uuid.UUID, contacts: list[tuple], idents: list[tuple]) -> str:
    """Insert, then return ``session_replication_role`` as the transaction sees it afterwards."""
    from tessera.contacts.importer import CONTACT_COLUMNS, IDENTITY_COLUMNS
    from tessera.contacts.repository import ContactRepository
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    role = "origin"
    with context.tenant_scope(tenant_id):
        async with unit_of_work() as s:
            repo = ContactRepository(s)
            await repo.insert_contacts_with_identities(CONTACT_COLUMNS, contacts, IDENTITY_COLUMNS, idents)
            if s.get_bind().dialect.name == "postgresql":
                role = (
                    await s.execute(text("SELECT current_setting('session_replication_role')"))
                ).scalar_one()
    return str(role)


async def _count(tenant_id: uuid.UUID, model: type) -> int:
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant_id):
        async with unit_of_work() as s:
            return int((await s.execute(select(func.count()).select_from(model))).scalar_one())


async def test_new_and_existing_owners_are_written_and_the_role_restored(tenant: TenantWorld) -> None:
    from tessera.contacts.importer import uuid7_hex
    from tessera.contacts.models import Contact, ContactIdentity

    first, second = uuid7_hex(2)
    contacts, idents = _rows([first], [first, first])
    assert await _insert(tenant.tenant_id, contacts, idents) == "origin"
    # a later chunk: a new contact, and a new identity for the contact of the first chunk
    contacts, idents = _rows([second], [second, first])
    assert await _insert(tenant.tenant_id, contacts, idents) == "origin"
    assert await _count(tenant.tenant_id, Contact) == 2
    assert await _count(tenant.tenant_id, ContactIdentity) == 4


async def test_an_identity_of_a_missing_contact_is_refused(tenant: TenantWorld) -> None:
    from tessera.contacts.importer import uuid7_hex
    from tessera.contacts.models import Contact, ContactIdentity

    new, gone = uuid7_hex(2)
    contacts, idents = _rows([new], [new, gone])
    with pytest.raises(IntegrityError):
        await _insert(tenant.tenant_id, contacts, idents)
    assert await _count(tenant.tenant_id, Contact) == 0  # the chunk left nothing behind
    assert await _count(tenant.tenant_id, ContactIdentity) == 0


async def test_the_row_checks_are_skipped_only_for_a_tenant_that_is_there(tenant: TenantWorld) -> None:
    """The once-per-chunk check: the tenant in scope must exist (it is then locked), and the
    foreign-key triggers come back on when asked; for a tenant that is not there nothing is
    switched off."""
    from tessera.contacts.repository import ContactRepository
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    async def role(s: AsyncSession) -> str:
        return str((await s.execute(text("SELECT current_setting('session_replication_role')"))).scalar_one())

    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            if s.get_bind().dialect.name != "postgresql":
                pytest.skip("the triggers are skipped on PostgreSQL only")
            repo = ContactRepository(s)
            assert await repo._skip_row_checks() is True
            assert await role(s) == "replica"
            await repo._restore_row_checks()
            assert await role(s) == "origin"
    with context.tenant_scope(uuid.uuid4()):
        async with unit_of_work() as s:
            assert await ContactRepository(s)._skip_row_checks() is False
            assert await role(s) == "origin"


def test_contact_rows_may_only_reference_the_tenant() -> None:
    import asyncio

    from tessera.contacts.repository import ContactRepository

    repo = ContactRepository.__new__(ContactRepository)
    with pytest.raises(ValueError):
        asyncio.run(repo.insert_contacts_with_identities(("id", "owner_id"), [], ("id", "contact_id"), []))


async def test_a_taken_identity_fails_the_chunk_with_an_integrity_error(tenant: TenantWorld) -> None:
    """A concurrent writer took an identity between the lookup and the insert: the unique index
    refuses it on the fast path too, as the IntegrityError the import retries on."""
    from tessera.contacts.importer import uuid7_hex
    from tessera.contacts.models import Contact

    first, second = uuid7_hex(2)
    contacts, idents = _rows([first], [first])
    await _insert(tenant.tenant_id, contacts, idents)
    again, _ = _rows([second], [second])
    taken = [(uuid7_hex(1)[0], second, "email", "sealed", idents[0][4], True, idents[0][6])]
    with pytest.raises(IntegrityError):
        await _insert(tenant.tenant_id, again, taken)
    assert await _count(tenant.tenant_id, Contact) == 1
