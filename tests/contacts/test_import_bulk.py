"""The PostgreSQL import path (contacts/import_bulk.py): statements built ahead in the worker
thread, rows that meet an existing contact masked out of them; the Bloom filter's batch calls."""

from __future__ import annotations

import os
import struct
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from tests.conftest import BACKEND, TenantWorld
from tests.contacts.conftest import make_contact
from tests.contacts.test_import_chunks import _job, _lookup, _start, _upload


def test_filter_batch_calls_agree_with_single_ones() -> None:
    from tessera.contacts.importer import IdentityFilter

    f = IdentityFilter.sized(10_000)
    added = [os.urandom(16).hex() for _ in range(10_000)]
    f.add_many(added[:5000])
    for i in added[5000:]:
        f.add(i)
    assert f.maybe(added) == list(range(10_000))
    others = [os.urandom(16).hex() for _ in range(10_000)]
    maybe = f.maybe(others)
    assert maybe == [k for k, i in enumerate(others) if i in f]
    assert len(maybe) < 10_000 * 0.03
    assert f.maybe([]) == [] and "short" not in f  # an index of another length is still probed


def _elements(param: Any) -> list[str | None]:
    """The elements of a column parameter: a binary array, a string for ``string_to_array``
    (separated by \\x1f, NULL as \\x1e) or a simple array literal."""
    if isinstance(param, bytes):
        return [None if b is None else b.decode() for b in _decode(param)[1]]
    if not param.startswith("{"):
        return [None if x == "\x1e" else x for x in param.split("\x1f")]
    return [None if x == "NULL" else x.strip('"') for x in param[1:-1].split(",")]


def _decode(data: bytes) -> tuple[int, list[bytes | None]]:
    """A one-dimensional binary PostgreSQL array: element type oid and raw elements."""
    ndim, _, oid, n, lower = struct.unpack(">iiiii", data[:20])
    assert (ndim, lower) == (1, 1)
    out: list[bytes | None] = []
    pos = 20
    for _ in range(n):
        (size,) = struct.unpack(">i", data[pos : pos + 4])
        pos += 4
        out.append(None if size < 0 else data[pos : pos + size])
        pos += max(size, 0)
    assert pos == len(data)
    return oid, out


def test_binary_arrays_hold_the_values() -> None:
    from tessera.contacts.repository import _pg_binary_array

    ids = [uuid.uuid4().hex for _ in range(50)]
    data = _pg_binary_array(ids, "uuid")
    assert data is not None and _decode(data) == (2950, [bytes.fromhex(i) for i in ids])
    assert _pg_binary_array([ids[0], None], "uuid") is None  # NULLs and other shapes: literals
    assert _pg_binary_array(["not-hex" + "0" * 25], "uuid") is None
    same = ["v1.ab+/=", 'q"\\,{}ab', "NULL    ", "        "]  # ASCII, one length: binary
    data = _pg_binary_array(same, "text")
    assert data is not None and _decode(data) == (25, [t.encode() for t in same])
    for other in (["客户1", "客户2"], ["ab", "abc"], ["ab", None], [1, 2], []):  # literals instead
        assert _pg_binary_array(other, "text") is None
    assert _pg_binary_array(["x"], "jsonb") is None
    long = ["x" * 300, "y" * 300]  # a length prefix with bytes past 0x7f
    data = _pg_binary_array(long, "text")
    assert data is not None and _decode(data) == (25, [t.encode() for t in long])
    # the ASCII check around the length where the prefix stops being ASCII itself
    for size in (1, 127, 128, 200, 256):
        ascii_ = ["a" * size, "b" * size]
        data = _pg_binary_array(ascii_, "text")
        assert data is not None and _decode(data) == (25, [t.encode() for t in ascii_])
        for odd in ("é", "客", "\x80", "\xff"):  # one non-ASCII character, same length
            assert _pg_binary_array(["a" * size, odd + "b" * (size - 1)], "text") is None


def test_masked_insert_leaves_out_the_flagged_rows() -> None:
    from tessera.contacts.repository import NOW, import_chunk_insert

    chunk = import_chunk_insert(
        {"id": ["a" * 32, "b" * 32], "created_at": NOW, "name": ["x", "y"]},
        {"id": ["c" * 32, "d" * 32, "e" * 32], "kind": ["phone", "email", "phone"]},
        [0, 0, 1],
    )
    _, owners = _decode(chunk.identities.params["c0"])
    assert owners == [bytes.fromhex(i) for i in ("a" * 32, "a" * 32, "b" * 32)]
    assert "get_byte" not in chunk.contacts.sql() and "get_byte" in chunk.contacts.sql(masked=True)
    assert chunk.contacts.rows == 2 and chunk.identities.rows == 3


async def test_binary_arrays_reach_postgresql_intact(tenant: TenantWorld) -> None:
    from tessera.contacts.repository import _pg_binary_array, binary_arrays
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    texts = ["NULL", "{x,}", 'q"\\,', "a,b ", "x" * 4]  # one length: sent binary
    ids = [uuid.uuid4().hex for _ in range(3)]
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            if s.get_bind().dialect.name != "postgresql":
                pytest.skip("PostgreSQL only")
            conn = await s.connection()
            await binary_arrays(conn)
            got = (
                await conn.exec_driver_sql(
                    "SELECT %(t)b::text[], %(u)b::uuid[]",
                    {"t": _pg_binary_array(texts, "text"), "u": _pg_binary_array(ids, "uuid")},
                )
            ).one()
    assert list(got[0]) == texts and [u.hex for u in got[1]] == ids


ROWS = [
    "姓名,手机,邮箱,城市,生日,标签",
    "新一,13800138601,n1@example.com,上海,1990-01-01,vip",  # 2 new
    "老客,13800138699,old2@example.com,深圳,,",  # 3 existing contact: updated, email added
    "新二,13800138602,,北京,1991-02-02,",  # 4 new
    "新一又来,13800138601,n1b@example.com,杭州,,new",  # 5 same phone as row 2 (next chunk)
    "新三,13800138603,n3@example.com,,,",  # 6 new
]


async def test_postgres_import_takes_the_prepared_path(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: Any
) -> None:
    from tessera.contacts import import_bulk
    from tessera.contacts.models import Contact, ContactIdentity
    from tessera.contacts.service.imports import run_import
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    if BACKEND != "postgres":
        pytest.skip("SQLite imports row by row (importer.write_chunk)")
    masked: list[int] = []
    ids: list[list[str]] = []
    original = import_bulk.write_bulk

    async def spy(session: Any, chunk: Any, run: Any, after: Any = None) -> Any:
        res = await original(session, chunk, run, after)
        masked.append(len(chunk.records) - res.created)
        ids.append(list(res.ids))
        return res

    monkeypatch.setattr(import_bulk, "write_bulk", spy)
    h = tenant.headers("admin")
    await make_contact(client, h, name="Old", phones=["13800138699"], city=None)
    job = await _upload(client, h, ROWS)
    await _start(tenant, job["id"])
    await run_import(tenant.tenant_id, uuid.UUID(job["id"]), chunk_size=2)
    done = await _job(client, h, job["id"])
    assert done["status"] == "done", done
    assert (done["rows_created"], done["rows_updated"], done["rows_failed"]) == (3, 1, 0)
    assert masked == [1, 1, 0]  # the existing contact, then the repeat of row 2
    old = await _lookup(client, h, "phone", "13800138699")
    assert old is not None and old["name"] == "老客" and old["city"] == "深圳"
    assert {e["value"] for e in old["emails"]} == {"old2@example.com"}
    first = await _lookup(client, h, "phone", "13800138601")
    assert first is not None and first["city"] == "上海"  # filled only, never overwritten
    # each record's contact: the one it met, else the one its row created
    others = [await _lookup(client, h, "phone", f"1380013860{k}") for k in (2, 3)]
    assert all(o is not None for o in others)
    want = [[first["id"], old["id"]], [others[0]["id"], first["id"]], [others[1]["id"]]]  # type: ignore[index]
    assert ids == [[uuid.UUID(i).hex for i in chunk] for chunk in want]
    assert {e["value"] for e in first["emails"]} == {"n1@example.com", "n1b@example.com"}
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            assert (await s.execute(select(func.count()).select_from(Contact))).scalar_one() == 4
            idents = (await s.execute(select(func.count()).select_from(ContactIdentity))).scalar_one()
            assert idents == 8  # old: 2 (its new email), row 2: 2 + row 5's email, row 4: 1, row 6: 2
            role = (await s.execute(text("SELECT current_setting('session_replication_role')"))).scalar_one()
            assert role == "origin"


def test_prepared_chunk_flags_primaries_and_phone_tails_per_record() -> None:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from tessera.contacts import import_bulk, importer
    from tessera.core.crypto.keyring import Sealer, TenantKeys

    sealer = Sealer(
        uuid.uuid4(), TenantKeys(1, {1: AESGCM(AESGCM.generate_key(bit_length=256))}, b"k" * 32, 0)
    )
    headers = ["姓名", "邮箱", "手机"]  # email before phone: the phone is not always first
    v = importer.RowValidator(headers, importer.auto_mapping(headers, {}), {}, "CN", sealer)
    cells = [
        ["a", "a@x.cn", "13800138001"],
        ["b", "", "13800138002;13800138003"],
        ["c", "c1@x.cn;c2@x.cn", ""],
        ["d", "d@x.cn", "13800138004;13800138005"],
        ["e", "", "13800138006"],
    ]
    chunk = import_bulk.prepare_bulk(v, [(n + 2, c) for n, c in enumerate(cells)])
    assert chunk.insert is not None and chunk.kinds is not None and chunk.indexes is not None
    want_primary: dict[str, bool] = {}
    want_tails = []
    for r in chunk.records:
        first: set[str] = set()
        for k, value, i in r.idents:
            want_primary[i] = k not in first
            first.add(k)
        want_tails.append(next((value[-4:] for k, value, _ in r.idents if k == "phone"), None))
    params = chunk.insert.identities.params
    cols = chunk.insert.identities.columns
    sorted_indexes = _elements(params[f"c{cols.index('value_index')}"])
    primary = params[f"c{cols.index('is_primary')}"]
    assert primary == "{" + ",".join("t" if want_primary[i] else "f" for i in sorted_indexes) + "}"
    ccols = chunk.insert.contacts.columns
    tails = _elements(chunk.insert.contacts.params[f"c{ccols.index('phone_tail')}"])
    assert tails == want_tails == ["8001", "8002", None, "8004", "8006"]


def test_filter_check_and_add_is_maybe_then_add() -> None:
    from tessera.contacts.importer import IdentityFilter

    one, two = IdentityFilter.sized(5_000), IdentityFilter.sized(5_000)
    for _ in range(3):  # the later batches meet the earlier ones
        batch = [os.urandom(16).hex() for _ in range(3_000)]
        batch[::50] = [os.urandom(8).hex() for _ in batch[::50]]  # some not blind indexes
        want = one.maybe(batch)
        one.add_many(batch)
        assert two.check_and_add(batch) == want
        assert bytes(two.bits) == bytes(one.bits)
    assert two.check_and_add([]) == []


async def test_rows_without_any_identity_are_imported(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    """A chunk whose rows have no phone or email (here a file without those columns) has no
    identity to insert; the PostgreSQL path used to fail building the empty statement."""
    from tessera.contacts.service.imports import run_import

    h = tenant.headers("admin")
    job = await _upload(client, h, ["Name,City", "无号一,上海", "无号二,北京", "无号三,"])
    await _start(tenant, job["id"])
    await run_import(tenant.tenant_id, uuid.UUID(job["id"]), chunk_size=2)
    done = await _job(client, h, job["id"])
    assert done["status"] == "done", done
    assert (done["rows_created"], done["rows_failed"], done["rows_done"]) == (3, 0, 3)
    r = await client.get("/v1/contacts", params={"limit": 10}, headers=h)
    assert sorted(c["name"] for c in r.json()["items"]) == ["无号一", "无号三", "无号二"]


@pytest.mark.parametrize("size", [0, 1, 2, 7])
def test_picker_reorders_like_the_comprehension(size: int) -> None:
    import random

    from tessera.contacts.import_bulk import _picker

    order = list(range(size))
    random.Random(size).shuffle(order)
    xs = [f"v{k}" for k in range(size)]
    got = _picker(order)(xs)
    assert got == [xs[j] for j in order] and isinstance(got, list)
    assert _picker(order)([k * 10 for k in range(size)]) == [j * 10 for j in order]


SPLIT_CASES: list[list[Any]] = [
    ["客户1", None, "", "NULL", 'q"\\,{}', " a b ", "\\N", "x" * 300],
    ["", ""],
    [None],
    ["only"],
]


def test_split_text_joins_by_the_separators() -> None:
    from tessera.contacts.repository import _NULL, _SEP, _pg_split_text

    for values in SPLIT_CASES:
        joined = _pg_split_text(values)
        assert joined is not None
        assert [None if x == _NULL else x for x in joined.split(_SEP)] == values
    for other in (["a\x1fb", "c"], ["a", "b\x1e"], [""], [1, 2], ["a", 3]):  # a literal instead
        assert _pg_split_text(other) is None


def test_text_columns_of_several_lengths_are_split_by_the_server() -> None:
    from tessera.contacts.models import Contact
    from tessera.contacts.repository import column_insert

    bulk = column_insert(
        Contact, {"id": ["a" * 32, "b" * 32], "name": ["客户1", "x"], "city": ["a\x1fb", "c"]}
    )
    assert "string_to_array(%(c1)s::text" in bulk.sql()  # the names
    assert "%(c2)s::text[]" in bulk.sql()  # a city holding the separator: a literal


async def test_split_text_reaches_postgresql_intact(tenant: TenantWorld) -> None:
    from tessera.contacts.repository import _SPLIT_SQL, _pg_split_text
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            if s.get_bind().dialect.name != "postgresql":
                pytest.skip("PostgreSQL only")
            conn = await s.connection()
            for values in SPLIT_CASES:
                got = (
                    await conn.exec_driver_sql(
                        f"SELECT string_to_array(%(t)s::text, {_SPLIT_SQL})", {"t": _pg_split_text(values)}
                    )
                ).scalar_one()
                assert list(got) == values
