"""Data-key rotation: new key version per tenant, then re-encrypt every encrypted column.

For each tenant, :func:`rotate_data_keys`

1. adds data-key version ``n+1`` *inactive* and waits ``propagation_seconds`` so every
   process's keyring (cached for :data:`KEY_TTL_SECONDS`) can decrypt it before any row uses it;
2. activates it and deactivates the older versions (they stay readable), waits again so
   writers switch to the new version;
3. re-encrypts every :class:`EncryptedString` column of every table in batches of short
   transactions: ``id`` and raw value of rows whose value does not start with ``v<n+1>.``,
   decrypt, encrypt, and ``UPDATE … WHERE id = ? AND col = <old raw value>`` so a concurrent
   writer's newer value is never overwritten (writers are never blocked for longer than one
   batch);
4. with ``rewrap_master`` re-wraps every key of the tenant under the current master key.

It is restartable: a second run with ``new_version=False`` finishes the sweep for the active
version without creating another one; a second run with a new version simply rotates again.
Blind indexes use the tenant's index key, which is not rotated, so they stay stable.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, and_, func, select, tuple_, type_coerce, update
from sqlalchemy.orm import Mapper

from tessera.core import context
from tessera.core.crypto.keyring import KEY_TTL_SECONDS, get_keyring
from tessera.core.crypto.models import TenantKey
from tessera.core.crypto.types import EncryptedString
from tessera.core.db.base import Base, TenantOwned
from tessera.core.db.session import unit_of_work
from tessera.core.tenancy.models import Tenant


@dataclass
class TenantRotation:
    tenant_id: uuid.UUID
    version: int
    rows: int = 0
    columns: dict[str, int] = field(default_factory=dict)
    rewrapped: int = 0


@dataclass
class RotationReport:
    tenants: list[TenantRotation] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return sum(t.rows for t in self.tenants)

    @property
    def rewrapped(self) -> int:
        return sum(t.rewrapped for t in self.tenants)


@dataclass(frozen=True)
class EncryptedColumn:
    model: type[Any]
    attr: str
    pk: tuple[str, ...]

    @property
    def label(self) -> str:
        return f"{self.model.__tablename__}.{self.attr}"


def encrypted_columns() -> list[EncryptedColumn]:
    """Every EncryptedString column of every tenant-owned mapped table."""
    from tessera.migrations.models import load_all

    load_all()
    out: list[EncryptedColumn] = []
    for mapper in Base.registry.mappers:
        m: Mapper[Any] = mapper
        cls = m.class_
        if not issubclass(cls, TenantOwned) or m.local_table is not m.persist_selectable:
            continue
        pk = tuple(m.get_property_by_column(c).key for c in m.primary_key)
        for prop in m.column_attrs:
            col = prop.columns[0]
            if isinstance(col.type, EncryptedString) and col.table is m.local_table:
                out.append(EncryptedColumn(cls, prop.key, pk))
    return sorted(out, key=lambda c: c.label)


async def _tenant_ids() -> list[uuid.UUID]:
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            return list((await s.execute(select(Tenant.id).order_by(Tenant.id))).scalars())


async def _add_version(tenant_id: uuid.UUID, propagation_seconds: float) -> int:
    keyring = get_keyring()
    async with unit_of_work() as s:
        current = (
            await s.execute(select(func.max(TenantKey.version)).where(TenantKey.purpose == "data"))
        ).scalar_one()
        version = int(current or 0) + 1
        row = keyring.new_data_key(tenant_id, version)
        row.active = False
        s.add(row)
    keyring.forget(tenant_id)
    if propagation_seconds:
        await asyncio.sleep(propagation_seconds)
    async with unit_of_work() as s:
        await s.execute(
            update(TenantKey)
            .where(TenantKey.purpose == "data")
            .values(active=TenantKey.version == version)
            .execution_options(synchronize_session=False)
        )
    keyring.forget(tenant_id)
    if propagation_seconds:
        await asyncio.sleep(propagation_seconds)
    return version


async def _active_version() -> int:
    async with unit_of_work() as s:
        v = (
            await s.execute(
                select(func.max(TenantKey.version)).where(
                    TenantKey.purpose == "data", TenantKey.active.is_(True)
                )
            )
        ).scalar_one()
    return int(v or 0)


async def _reencrypt_column(
    tenant_id: uuid.UUID, col: EncryptedColumn, version: int, batch_size: int, max_batches: int | None
) -> int:
    keyring = get_keyring()
    model = col.model
    raw = type_coerce(getattr(model, col.attr), String)
    pk_attrs = [getattr(model, k) for k in col.pk]
    prefix = f"v{version}."
    done = 0
    batches = 0
    last: tuple[Any, ...] | None = None
    while max_batches is None or batches < max_batches:
        stmt = select(*pk_attrs, raw.label("raw_value")).where(
            raw.is_not(None), ~raw.startswith(prefix, autoescape=True)
        )
        if last is not None:
            # Keyset over the primary key: rows that fail to decrypt are not retried forever.
            stmt = stmt.where(tuple_(*pk_attrs) > tuple_(*last))
        stmt = stmt.order_by(*pk_attrs).limit(batch_size)
        async with unit_of_work() as s:
            rows = (await s.execute(stmt)).all()
            for row in rows:
                *pk_values, old = row
                plain = keyring.decrypt(tenant_id, old)
                cond = and_(*(a == v for a, v in zip(pk_attrs, pk_values, strict=True)), raw == old)
                res = await s.execute(
                    update(model)
                    .where(cond)
                    .values({col.attr: plain})
                    .execution_options(synchronize_session=False)
                )
                done += getattr(res, "rowcount", 0) or 0  # CursorResult of an UPDATE
        batches += 1
        if len(rows) < batch_size:
            break
        last = tuple(rows[-1][: len(pk_attrs)])
    return done


async def _rewrap(tenant_id: uuid.UUID) -> int:
    keyring = get_keyring()
    current = keyring.masters.current_id
    async with unit_of_work() as s:
        rows = (await s.execute(select(TenantKey).where(TenantKey.master_key_id != current))).scalars().all()
        for row in rows:
            keyring.rewrap(row)
    keyring.forget(tenant_id)
    return len(rows)


async def rotate_tenant(
    tenant_id: uuid.UUID,
    *,
    batch_size: int = 500,
    rewrap_master: bool = False,
    new_version: bool = True,
    propagation_seconds: float = KEY_TTL_SECONDS,
    max_batches: int | None = None,
) -> TenantRotation:
    with context.tenant_scope(tenant_id):
        version = (
            await _add_version(tenant_id, propagation_seconds) if new_version else await _active_version()
        )
        result = TenantRotation(tenant_id, version)
        if rewrap_master:
            result.rewrapped = await _rewrap(tenant_id)
        if version == 0:
            return result
        get_keyring().forget(tenant_id)
        for col in encrypted_columns():
            n = await _reencrypt_column(tenant_id, col, version, batch_size, max_batches)
            result.columns[col.label] = n
            result.rows += n
    return result


async def rotate_data_keys(
    batch_size: int = 500,
    rewrap_master: bool = False,
    *,
    new_version: bool = True,
    propagation_seconds: float = KEY_TTL_SECONDS,
    tenant_ids: list[uuid.UUID] | None = None,
) -> RotationReport:
    """Rotate every tenant's data key and re-encrypt its personal data (see module docstring)."""
    report = RotationReport()
    for tid in tenant_ids if tenant_ids is not None else await _tenant_ids():
        report.tenants.append(
            await rotate_tenant(
                tid,
                batch_size=batch_size,
                rewrap_master=rewrap_master,
                new_version=new_version,
                propagation_seconds=propagation_seconds,
            )
        )
    return report
