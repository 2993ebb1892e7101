"""Encryption round trips, tenant binding, blind indexes and data-key rotation."""

from __future__ import annotations

import base64
import os
import uuid

import pytest
from cryptography.exceptions import InvalidTag
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import String, select, type_coerce

from tessera.core import context
from tessera.core.crypto.keyring import Keyring, MasterKeys, get_keyring
from tessera.core.crypto.models import TenantKey
from tessera.core.crypto.rotation import encrypted_columns, rotate_data_keys, rotate_tenant
from tessera.core.crypto.types import blind_index
from tessera.core.db.session import unit_of_work
from tessera.core.identity.models import User
from tests.conftest import TenantWorld

DB_SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=list(HealthCheck))


def _keyring() -> Keyring:
    return Keyring(MasterKeys(current=os.urandom(32)))


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_keyring_round_trip(value: str) -> None:
    kr = _keyring()
    tid, other = uuid.uuid4(), uuid.uuid4()
    kr.new_tenant_keys(tid)
    kr.new_tenant_keys(other)
    token = kr.encrypt(tid, value)
    assert token.startswith("v1.")
    assert kr.decrypt(tid, token) == value
    assert kr.encrypt(tid, value) != token  # random nonce
    with pytest.raises(InvalidTag):  # tenant id is the AAD: another tenant's key cannot read it
        kr.decrypt(other, token)
    blob = bytearray(base64.b64decode(token[3:]))
    blob[-1] ^= 1
    with pytest.raises(InvalidTag):
        kr.decrypt(tid, "v1." + base64.b64encode(bytes(blob)).decode())


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1), st.text(min_size=1))
def test_blind_index_is_keyed_and_deterministic(a: str, b: str) -> None:
    kr = _keyring()
    tid, other = uuid.uuid4(), uuid.uuid4()
    kr.new_tenant_keys(tid)
    kr.new_tenant_keys(other)
    assert kr.blind_index(tid, "phone", a) == kr.blind_index(tid, "phone", a)
    assert (kr.blind_index(tid, "phone", a) == kr.blind_index(tid, "phone", b)) == (a == b)
    assert kr.blind_index(tid, "phone", a) != kr.blind_index(other, "phone", a)
    assert kr.blind_index(tid, "phone", a) != kr.blind_index(tid, "email", a)


async def _insert_users(world: TenantWorld, values: list[str]) -> list[uuid.UUID]:
    ids = []
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            for v in values:
                u = User(
                    email=f"{uuid.uuid4().hex}@h.example.com",
                    name="H",
                    phone=v,
                    totp_secret=v[::-1],
                    phone_index=blind_index("phone", v),
                    role_id=world.roles["member"],
                )
                s.add(u)
                await s.flush()
                ids.append(u.id)
    return ids


async def _read(
    world: TenantWorld, ids: list[uuid.UUID]
) -> list[tuple[str | None, str | None, str | None, str]]:
    get_keyring().forget(world.tenant_id)
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            out = []
            for uid in ids:
                row = (
                    await s.execute(
                        select(
                            User.phone,
                            User.totp_secret,
                            User.phone_index,
                            type_coerce(User.phone, String).label("raw"),
                        ).where(User.id == uid)
                    )
                ).one()
                out.append(tuple(row))
            return out  # type: ignore[return-value]


@DB_SETTINGS
@given(values=st.lists(st.text(max_size=200), min_size=1, max_size=4))
async def test_encrypted_string_round_trip(tenant: TenantWorld, values: list[str]) -> None:
    ids = await _insert_users(tenant, values)
    rows = await _read(tenant, ids)
    for v, (phone, totp, _index, raw) in zip(values, rows, strict=True):
        assert phone == v and totp == v[::-1]
        assert raw.startswith("v1.") and (len(v) < 4 or v not in raw[3:])


async def test_encrypted_columns_are_discovered() -> None:
    labels = {c.label for c in encrypted_columns()}
    assert {"users.phone", "users.totp_secret"} <= labels


async def _raw_versions(world: TenantWorld) -> set[str]:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            raws = (
                await s.execute(select(type_coerce(User.phone, String)).where(User.phone.is_not(None)))
            ).scalars()
            return {r.split(".", 1)[0] for r in raws}


@DB_SETTINGS
@given(values=st.lists(st.text(max_size=100), min_size=1, max_size=5))
async def test_rotation_reencrypts_and_keeps_values(
    tenant: TenantWorld, other_tenant: TenantWorld, values: list[str]
) -> None:
    ids = await _insert_users(tenant, values)
    before = await _read(tenant, ids)
    other_before = await _read(other_tenant, list(other_tenant.users.values()))
    versions_before = await _raw_versions(tenant)
    report = await rotate_data_keys(batch_size=3, propagation_seconds=0)
    mine = next(t for t in report.tenants if t.tenant_id == tenant.tenant_id)
    assert f"v{mine.version}" not in versions_before
    assert mine.columns["users.phone"] >= len(values)
    after = await _read(tenant, ids)
    assert [r[:3] for r in after] == [r[:3] for r in before]  # same plaintexts, same blind index
    assert await _raw_versions(tenant) == {f"v{mine.version}"}
    assert [r[:3] for r in await _read(other_tenant, list(other_tenant.users.values()))] == [
        r[:3] for r in other_before
    ]
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            keys = (
                await s.execute(
                    select(TenantKey.version, TenantKey.active).where(TenantKey.purpose == "data")
                )
            ).all()
            assert sorted(v for v, a in keys if a) == [mine.version]
            assert {v for v, _a in keys} == set(range(1, mine.version + 1))
            # New writes use the new version.
            u = User(
                email=f"{uuid.uuid4().hex}@n.example.com",
                name="N",
                phone="+8613900000000",
                role_id=tenant.roles["member"],
            )
            s.add(u)
    assert await _raw_versions(tenant) == {f"v{mine.version}"}


async def test_rotation_is_restartable(tenant: TenantWorld) -> None:
    ids = await _insert_users(tenant, [f"+86139{i:08d}" for i in range(7)])
    expected = await _read(tenant, ids)
    partial = await rotate_tenant(tenant.tenant_id, batch_size=2, max_batches=1, propagation_seconds=0)
    versions = await _raw_versions(tenant)
    assert f"v{partial.version}" in versions and len(versions) == 2  # interrupted half-way
    assert [r[:3] for r in await _read(tenant, ids)] == [r[:3] for r in expected]  # still readable
    resumed = await rotate_data_keys(tenant_ids=[tenant.tenant_id], new_version=False, propagation_seconds=0)
    assert resumed.tenants[0].version == partial.version
    assert await _raw_versions(tenant) == {f"v{partial.version}"}
    assert [r[:3] for r in await _read(tenant, ids)] == [r[:3] for r in expected]
    again = await rotate_data_keys(tenant_ids=[tenant.tenant_id], new_version=False, propagation_seconds=0)
    assert again.rows == 0


async def test_rewrap_under_new_master_key(tenant: TenantWorld) -> None:
    ids = await _insert_users(tenant, ["+8613700000000", "秘密 🔐"])
    expected = await _read(tenant, ids)
    kr = get_keyring()
    old = kr.masters
    new_master = os.urandom(32)
    kr.masters = MasterKeys(current=new_master, previous={old.current_id: old.current, **old.previous})
    try:
        report = await rotate_data_keys(
            rewrap_master=True, propagation_seconds=0, tenant_ids=[tenant.tenant_id]
        )
        assert report.rewrapped >= 2
        with context.tenant_scope(tenant.tenant_id):
            async with unit_of_work() as s:
                kids = set((await s.execute(select(TenantKey.master_key_id))).scalars())
        assert kids == {kr.masters.current_id}
        # Only the new master key is needed now.
        kr.masters = MasterKeys(current=new_master)
        assert [r[:3] for r in await _read(tenant, ids)] == [r[:3] for r in expected]
    finally:
        kr.masters = old
        kr.forget()


async def test_decrypt_needs_the_tenant_in_scope(tenant: TenantWorld) -> None:
    ids = await _insert_users(tenant, ["+8613600000000"])
    with context.tenant_scope(None), pytest.raises(context.NoTenantInScope):
        async with unit_of_work() as s:
            await s.execute(select(User.phone).where(User.id == ids[0]))
