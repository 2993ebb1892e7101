"""The import's updates of existing contacts (``ContactRepository.update_from_import``):
non-empty new values win (or only fill gaps with ``fill_only``), empty cells never erase,
rows naming the same contact apply in order, personal fields are stored encrypted, other
tenants' contacts are untouched.

(One ``UPDATE … FROM unnest(…)`` per chunk was tried on PostgreSQL: while an import grows the
table its statistics are stale, and the planner then joins through the tenant's index, reading
every contact of the tenant per chunk; the per-row statements probe the primary key.)"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select

from tests.conftest import TenantWorld

STORED: dict[str, Any] = {"name": "Old", "city": None, "gender": "male", "birthday": "1980-01-02"}


async def _make(tenant_id: uuid.UUID, n: int) -> list[uuid.UUID]:
    from tessera.contacts.models import Contact
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant_id):
        async with unit_of_work() as s:
            rows = [Contact(**STORED, attributes={"a": 1, "b": 2}) for _ in range(n)]
            s.add_all(rows)
            await s.flush()
            return [r.id for r in rows]


def _row(
    cid: uuid.UUID, now: dt.datetime, attributes: dict[str, Any] | None, **values: Any
) -> dict[str, Any]:
    from tessera.contacts.importer import COLUMNS

    row = {"b_id": cid, "b_now": now, "b_attributes": attributes}
    for c in COLUMNS:
        row[f"b_{c}"] = values.get(c)
    return row


async def _update(tenant_id: uuid.UUID, rows: list[dict[str, Any]], fill_only: bool) -> None:
    from tessera.contacts.importer import COLUMNS
    from tessera.contacts.repository import ContactRepository
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant_id):
        async with unit_of_work() as s:
            await ContactRepository(s).update_from_import(rows, COLUMNS, fill_only=fill_only)


async def _read(tenant_id: uuid.UUID, ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    from tessera.contacts.models import Contact
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant_id):
        async with unit_of_work() as s:
            got = {c.id: c for c in (await s.execute(select(Contact).where(Contact.id.in_(ids)))).scalars()}
            return [
                {
                    "name": got[i].name,
                    "city": got[i].city,
                    "gender": got[i].gender,
                    "birthday": got[i].birthday,
                    "attributes": got[i].attributes,
                    "updated_at": got[i].updated_at,
                }
                for i in ids
            ]


async def test_new_values_win_and_empty_cells_keep(tenant: TenantWorld) -> None:
    from tessera.core.db.base import utcnow

    ids = await _make(tenant.tenant_id, 3)
    now = utcnow() + dt.timedelta(seconds=5)
    rows = [
        _row(ids[0], now, {"b": 20, "c": 3}, name="New", city="上海", birthday="1990-03-04"),
        _row(ids[1], now, None, gender="female"),  # name empty: kept; attributes kept
        _row(ids[2], now, None, name='Quo"te\\', city="NULL"),  # literal-sensitive text
    ]
    await _update(tenant.tenant_id, rows, fill_only=False)
    a, b, c = await _read(tenant.tenant_id, ids)
    assert (a["name"], a["city"], a["gender"], a["birthday"]) == ("New", "上海", "male", "1990-03-04")
    assert a["attributes"] == {"b": 20, "c": 3}  # replaced as a whole, as before
    assert (b["name"], b["city"], b["gender"], b["birthday"]) == ("Old", None, "female", "1980-01-02")
    assert b["attributes"] == {"a": 1, "b": 2}
    assert (c["name"], c["city"]) == ('Quo"te\\', "NULL")
    assert all(x["updated_at"] == now for x in (a, b, c))


async def test_fill_only_keeps_every_stored_value(tenant: TenantWorld) -> None:
    from tessera.core.db.base import utcnow

    ids = await _make(tenant.tenant_id, 2)
    now = utcnow() + dt.timedelta(seconds=5)
    rows = [
        _row(ids[0], now, {"b": 20, "c": 3}, name="New", city="上海", birthday="1990-03-04"),
        _row(ids[1], now, None),
    ]
    await _update(tenant.tenant_id, rows, fill_only=True)
    a, b = await _read(tenant.tenant_id, ids)
    assert (a["name"], a["city"], a["gender"], a["birthday"]) == ("Old", "上海", "male", "1980-01-02")
    assert a["attributes"] == {"a": 1, "b": 2, "c": 3}  # stored keys win, new keys added
    assert (b["name"], b["city"], b["attributes"]) == ("Old", None, {"a": 1, "b": 2})
    assert a["updated_at"] == b["updated_at"] == now


async def test_two_rows_of_one_contact_apply_in_order(tenant: TenantWorld) -> None:
    from tessera.core.db.base import utcnow

    (cid,) = await _make(tenant.tenant_id, 1)
    now = utcnow()
    await _update(
        tenant.tenant_id, [_row(cid, now, None, city="北京"), _row(cid, now, None, city="上海")], True
    )
    (got,) = await _read(tenant.tenant_id, [cid])
    assert got["city"] == "北京"  # the first filled the gap; the second found none
    await _update(
        tenant.tenant_id, [_row(cid, now, None, city="广州"), _row(cid, now, None, name="Z")], False
    )
    (got,) = await _read(tenant.tenant_id, [cid])
    assert (got["city"], got["name"]) == ("广州", "Z")


async def test_another_tenants_contact_is_untouched(tenant: TenantWorld, other_tenant: TenantWorld) -> None:
    from tessera.core.db.base import utcnow

    (theirs,) = await _make(other_tenant.tenant_id, 1)
    (mine,) = await _make(tenant.tenant_id, 1)
    now = utcnow()
    rows = [_row(theirs, now, None, name="Hijack"), _row(mine, now, None, name="Mine")]
    await _update(tenant.tenant_id, rows, fill_only=False)
    assert (await _read(other_tenant.tenant_id, [theirs]))[0]["name"] == "Old"
    assert (await _read(tenant.tenant_id, [mine]))[0]["name"] == "Mine"


async def test_personal_fields_are_stored_encrypted(tenant: TenantWorld) -> None:
    from sqlalchemy import literal_column

    from tessera.contacts.models import Contact
    from tessera.core import context
    from tessera.core.db.base import utcnow
    from tessera.core.db.session import unit_of_work

    (cid,) = await _make(tenant.tenant_id, 1)
    await _update(tenant.tenant_id, [_row(cid, utcnow(), None, birthday="1999-12-31")], fill_only=False)
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            table = Contact.__table__
            stmt = select(literal_column("birthday")).select_from(table).where(table.c.id == cid)
            raw = (await s.execute(stmt)).scalar_one()  # as stored, not decrypted
    assert raw.startswith("v") and "1999" not in raw
    assert (await _read(tenant.tenant_id, [cid]))[0]["birthday"] == "1999-12-31"
