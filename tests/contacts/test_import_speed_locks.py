"""The import's once-per-chunk lock of the contacts that get new identities probes each of them
by primary key, whatever the table statistics say (PostgreSQL). While an import runs the
statistics are stale; ``id = ANY(…)`` was then planned as a scan of every contact of the
tenant filtered by the array, once per chunk: quadratic in the size of the file."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from tests.conftest import TenantWorld


async def test_the_lock_of_existing_owners_probes_the_primary_key(tenant: TenantWorld) -> None:
    from tessera.contacts import repository
    from tessera.contacts.importer import CONTACT_COLUMNS, IDENTITY_COLUMNS, uuid7_hex
    from tessera.contacts.repository import ContactRepository, _pg_array_literal
    from tessera.core import context
    from tessera.core.db.base import utcnow
    from tessera.core.db.session import unit_of_work

    ids = uuid7_hex(5000)
    now = utcnow()
    contacts = [
        (cid, now, now, f"c{n}", None, None, None, None, None, None, None, "import", "lead", {}, None)
        for n, cid in enumerate(ids)
    ]
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            if s.get_bind().dialect.name != "postgresql":
                pytest.skip("the statement is PostgreSQL's")
            await ContactRepository(s).insert_contacts_with_identities(
                CONTACT_COLUMNS, contacts, IDENTITY_COLUMNS, [], set()
            )
        owners = ids[::25]  # 200 of them; the table is not analysed (as during an import)
        async with unit_of_work() as s:
            conn = await s.connection()
            params = {"t": tenant.tenant_id, "ids": _pg_array_literal(owners, "uuid"), "n": len(owners)}
            plan = (
                await conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + repository.LOCK_REFERENCES_SQL, params)
            ).scalar_one()
            text_plan = json.dumps(plan)
            assert "pk_contacts" in text_plan
            assert "ix_contacts_tenant_created" not in text_plan
            repo = ContactRepository(s)
            assert await repo._lock_references(set(owners)) is True
            # every one of them is locked FOR KEY SHARE by this transaction
            locked = (
                await s.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'relation'"
                        " AND relation = 'contacts'::regclass AND pid = pg_backend_pid()"
                    )
                )
            ).scalar_one()
            assert locked >= 1
