"""A first import (the tenant has no identity yet) looks up only identities the run wrote
(a Bloom filter of them): duplicates across chunks are still merged, and a contact another
writer creates while the import runs is found through the retry, not duplicated."""

from __future__ import annotations

import os
import uuid
from typing import Any

import httpx

from tests.conftest import TenantWorld
from tests.contacts.conftest import make_contact
from tests.contacts.test_import_chunks import _job, _lookup, _start, _upload

ROWS = [
    "姓名,手机,邮箱,城市",
    "甲一,13800138401,a1@example.com,上海",  # 2
    "甲二,13800138402,,北京",  # 3
    "甲三,13800138403,,",  # 4
    "甲一重复,13800138401,a1b@example.com,杭州",  # 5 duplicate of row 2 (next chunk)
    "插队,13800138499,,深圳",  # 6 another writer creates this phone before chunk 3 is written
    "甲二又来,13800138402,,广州",  # 7 duplicate of row 3 (two chunks later)
]


def test_filter_never_misses_and_rarely_says_maybe() -> None:
    from tessera.contacts.importer import IdentityFilter

    f = IdentityFilter.sized(20_000)
    added = [os.urandom(16).hex() for _ in range(20_000)]
    for i in added:
        f.add(i)
    assert all(i in f for i in added)
    others = [os.urandom(16).hex() for _ in range(20_000)]
    assert sum(i in f for i in others) < 20_000 * 0.03


def test_filter_keeps_every_bit_of_a_batch_sharing_bytes() -> None:
    """A batch whose probes set different bits of one byte keeps them all (a plain scatter
    would keep only the last write to each byte, and then miss identities it was given)."""
    from tessera.contacts.importer import IdentityFilter

    f = IdentityFilter(256)  # 32 bytes: a batch of 500 sets several bits of every byte
    added = [os.urandom(16).hex() for _ in range(500)]
    f.add_many(added)
    assert f.maybe(added) == list(range(500))
    g = IdentityFilter(256)
    assert g.check_and_add(added[:250] * 2) == []  # nothing before it, repeats in the batch
    assert g.maybe(added[:250]) == list(range(250))


async def test_first_import_merges_across_chunks_and_meets_a_concurrent_writer(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: Any
) -> None:
    from tessera.contacts.service import imports
    from tessera.contacts.service.imports import run_import

    h = tenant.headers("admin")
    job = await _upload(client, h, ROWS)
    await _start(tenant, job["id"])
    chunks_written = 0
    original = imports._write_chunk

    async def write_chunk(job_id: Any, prepared: Any, run: Any, errors: Any, **kw: Any) -> bool:
        nonlocal chunks_written
        if chunks_written == 2:  # before chunk 3 (rows 6, 7) starts; chunk 2 may be writing
            assert run.written is not None  # the first-import path is the one under test
            await make_contact(client, h, name="Other writer", phones=["13800138499"])
        chunks_written += 1
        return bool(await original(job_id, prepared, run, errors, **kw))

    monkeypatch.setattr(imports, "_write_chunk", write_chunk)
    await run_import(tenant.tenant_id, uuid.UUID(job["id"]), chunk_size=2)
    done = await _job(client, h, job["id"])
    assert done["status"] == "done", done
    # created: rows 2, 3, 4; row 6 updates the other writer's contact; rows 5, 7 merged
    assert (done["rows_created"], done["rows_updated"], done["rows_failed"]) == (3, 1, 0)
    first = await _lookup(client, h, "phone", "13800138401")
    assert first is not None and {e["value"] for e in first["emails"]} == {
        "a1@example.com",
        "a1b@example.com",
    }
    second = await _lookup(client, h, "phone", "13800138402")
    assert second is not None and second["city"] == "北京"
    other = await _lookup(client, h, "phone", "13800138499")
    assert other is not None and other["name"] == "插队" and other["city"] == "深圳"
    r = await client.get("/v1/contacts", params={"limit": 50}, headers=h)
    assert len(r.json()["items"]) == 4


def test_filter_finds_an_index_added_beside_one_that_is_not_a_blind_index() -> None:
    """Each index gives the same probes whatever its batch holds (a batch with one string that
    is not 32 hex digits used to hash all of them, and a blind index added there was then
    missed when checked on its own)."""
    from tessera.contacts.importer import IdentityFilter

    f = IdentityFilter.sized(10_000)
    blind = [os.urandom(16).hex() for _ in range(50)]
    f.add_many([*blind, "not a blind index"])
    assert f.maybe(blind) == list(range(50)) and "not a blind index" in f
