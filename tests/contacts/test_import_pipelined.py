"""PostgreSQL writes two import chunks at a time (service/imports.run_import): a chunk's new rows
go in while the chunk before is still being written, everything else waits for that chunk's
commit. What a file gives must not depend on it: merges across chunks, progress and the error
file in file order, and a failure rolls back the chunk written beside it."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import BACKEND, TenantWorld
from tests.contacts.test_import_chunks import _job, _lookup, _start, _upload

pytestmark = pytest.mark.skipif(BACKEND != "postgres", reason="SQLite writes one chunk at a time")

# chunks of 3 rows (file rows 2-4, 5-7, 8-10, 11-13)
ROWS = [
    "姓名,手机,邮箱,城市",
    "甲,13800138501,a@example.com,",  # 2 A
    "乙,13800138502,,上海",  # 3 B
    "坏号,12,,",  # 4 rejected
    "丙,13800138503,,",  # 5 C
    "甲又,13800138501,a2@example.com,杭州",  # 6 A again, chunk 1 just before: deferred
    "丁,13800138504,,",  # 7 D
    "乙又,13800138502,b@example.com,北京",  # 8 B again, two chunks back: found by lookup
    "戊,13800138505,,",  # 9 E
    ",13800138599,,",  # 10 rejected: no name
    "丙又,13800138503,,深圳",  # 11 C again, two chunks back
    "戊又,13800138505,e@example.com,成都",  # 12 E again, chunk 3 just before: deferred
    "己,13800138506,,",  # 13 F
]


async def _import(client: httpx.AsyncClient, tenant: TenantWorld) -> dict[str, Any]:
    """Upload :data:`ROWS`, run the import in chunks of 3 rows; the job as the API shows it."""
    from tessera.contacts.service.imports import run_import

    h = tenant.headers("admin")
    job = await _upload(client, h, ROWS)
    await _start(tenant, job["id"])
    await run_import(tenant.tenant_id, uuid.UUID(job["id"]), chunk_size=3)
    return await _job(client, h, job["id"])


async def _stopped_import(
    client: httpx.AsyncClient, tenant: TenantWorld, rows: list[str], chunk_size: int, error: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Upload ``rows`` and run an import that a patched writer stops with ``error``: the job
    as uploaded, and as the API shows it after the stop."""
    from tessera.contacts.service.imports import run_import

    h = tenant.headers("admin")
    job = await _upload(client, h, rows)
    await _start(tenant, job["id"])
    with pytest.raises(RuntimeError, match=error):
        await run_import(tenant.tenant_id, uuid.UUID(job["id"]), chunk_size=chunk_size)
    return job, await _job(client, h, job["id"])


async def _contacts(tenant: TenantWorld) -> int:
    from tessera.contacts.models import Contact
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            return int((await s.execute(select(func.count()).select_from(Contact))).scalar_one())


async def test_two_chunks_write_at_once_and_the_file_reads_as_in_order(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: Any
) -> None:
    from tessera.contacts import import_bulk

    original = import_bulk.write_bulk
    writing = 0
    most = 0
    deferred: list[tuple[int, int]] = []  # (the chunk's last row, its deferred records)

    async def spy(session: Any, chunk: Any, run: Any, after: Any = None) -> Any:
        nonlocal writing, most
        writing += 1
        most = max(most, writing)
        deferred.append((chunk.last_row, len(chunk.deferred)))
        try:
            await asyncio.sleep(0.05)  # long enough for the next chunk to start beside this one
            return await original(session, chunk, run, after)
        finally:
            writing -= 1

    monkeypatch.setattr(import_bulk, "write_bulk", spy)
    h = tenant.headers("admin")
    done = await _import(client, tenant)
    assert done["status"] == "done", done
    assert (done["rows_created"], done["rows_updated"], done["rows_failed"], done["rows_done"]) == (
        6,
        0,
        2,
        12,
    )
    assert most == 2  # the chunks did overlap
    # (which of two chunks reaches here first is not fixed: the later may overtake the earlier)
    assert [n for _, n in sorted(deferred)] == [0, 1, 0, 1]
    assert await _contacts(tenant) == 6
    a = await _lookup(client, h, "phone", "13800138501")
    assert (
        a is not None
        and a["city"] == "杭州"
        and {e["value"] for e in a["emails"]}
        == {
            "a@example.com",
            "a2@example.com",
        }
    )
    b = await _lookup(client, h, "phone", "13800138502")
    assert b is not None and b["city"] == "上海" and [e["value"] for e in b["emails"]] == ["b@example.com"]
    c = await _lookup(client, h, "phone", "13800138503")
    assert c is not None and c["city"] == "深圳"
    e = await _lookup(client, h, "email", "e@example.com")
    assert e is not None and e["name"] == "戊" and e["city"] == "成都"
    r = await client.get(f"/v1/imports/{done['id']}/errors", headers=h)
    assert r.status_code == 200
    rows = [line.split(",")[0] for line in r.text.splitlines()[1:]]
    assert rows == ["4", "10"]  # appended in file order


async def test_a_failed_chunk_rolls_back_the_one_written_beside_it_and_the_import_resumes(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: Any
) -> None:
    from tessera.contacts import import_bulk
    from tessera.contacts.service.imports import run_import

    original = import_bulk.write_bulk
    calls = 0
    started_third = asyncio.Event()

    async def fail_second(session: Any, chunk: Any, run: Any, after: Any = None) -> Any:
        nonlocal calls
        calls += 1
        if calls == 3:
            started_third.set()
        if calls == 2:
            await original(session, chunk, run, after)
            await asyncio.wait_for(started_third.wait(), 10)  # chunk 3 is writing beside it
            await asyncio.sleep(0.05)
            raise RuntimeError("the database went away")
        return await original(session, chunk, run, after)

    monkeypatch.setattr(import_bulk, "write_bulk", fail_second)
    h = tenant.headers("admin")
    job, stopped = await _stopped_import(client, tenant, ROWS, 3, "went away")
    assert stopped["rows_done"] == 3 and stopped["rows_created"] == 2  # chunk 1 only
    assert await _contacts(tenant) == 2  # chunk 3's new rows were rolled back with it

    monkeypatch.setattr(import_bulk, "write_bulk", original)
    await run_import(tenant.tenant_id, uuid.UUID(job["id"]), chunk_size=3)  # the job's retry
    done = await _job(client, h, job["id"])
    assert done["status"] == "done", done
    assert (done["rows_created"], done["rows_failed"], done["rows_done"]) == (6, 2, 12)
    assert await _contacts(tenant) == 6
    a = await _lookup(client, h, "phone", "13800138501")
    assert a is not None and {e["value"] for e in a["emails"]} == {"a@example.com", "a2@example.com"}


async def test_a_deferred_record_whose_identities_are_not_there_is_still_created(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: Any
) -> None:
    """Not expected (the chunk before wrote every identity it held), but a deferred record met
    by no lookup must become a contact, not vanish: it takes the row path."""
    from tessera.contacts import import_bulk

    original = import_bulk.prepare_bulk

    def defer_first(*args: Any, **kw: Any) -> Any:
        chunk = original(*args, **kw)
        chunk.deferred = sorted({0, *chunk.deferred})
        return chunk

    monkeypatch.setattr(import_bulk, "prepare_bulk", defer_first)
    h = tenant.headers("admin")
    done = await _import(client, tenant)
    assert (done["status"], done["rows_created"], done["rows_failed"]) == ("done", 6, 2)
    assert await _contacts(tenant) == 6
    for phone in ("13800138501", "13800138503", "13800138506"):
        assert await _lookup(client, h, "phone", phone) is not None


async def test_ramped_chunks_merge_across_their_cuts_and_resume_where_they_were_cut(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: Any
) -> None:
    """A large file is cut small at both ends (importer.ramped_sizes; here scaled down to chunks
    of 8 rows cut 1, 1, 2, 4, 8 … 4, 2, 1, 1): the same merges and counts as in whole chunks, and
    a run that stops after some chunks resumes at the same cut."""
    from tessera.contacts import import_bulk, importer
    from tessera.contacts.service.imports import run_import

    monkeypatch.setattr(importer, "_RAMP_LEAST", 1)
    rows = ["姓名,手机,邮箱"]
    for i in range(48):  # rows 2-49; every seventh repeats the phone of the row three before
        phone = 13800138600 + (i - 3 if i % 7 == 6 else i)
        rows.append(f"客户{i},{phone},c{i}@example.com" if i != 21 else f"客户{i},12,")  # one bad
    cuts: list[int] = []
    original = import_bulk.write_bulk

    async def stop_at_the_ninth(session: Any, chunk: Any, run: Any, after: Any = None) -> Any:
        cuts.append(len(chunk.rows))
        if len(cuts) == 9:
            raise RuntimeError("the worker was stopped")
        return await original(session, chunk, run, after)

    monkeypatch.setattr(import_bulk, "write_bulk", stop_at_the_ninth)
    h = tenant.headers("admin")
    job, stopped = await _stopped_import(client, tenant, rows, 8, "stopped")
    assert cuts[:5] == [1, 1, 2, 4, 8]
    done_before = stopped["rows_done"]
    assert 0 < done_before < 48
    cuts.clear()
    monkeypatch.setattr(import_bulk, "write_bulk", original)
    resumed = importer.read_chunks
    firsts: list[int] = []

    def spy_chunks(*args: Any, **kw: Any) -> Any:
        headers, gen = resumed(*args, **kw)

        def each() -> Any:
            for chunk in gen:
                firsts.append(chunk[0][0] - 2)  # data rows before the chunk (row 1: the header)
                yield chunk

        return headers, each()

    monkeypatch.setattr(importer, "read_chunks", spy_chunks)
    await run_import(tenant.tenant_id, uuid.UUID(job["id"]), chunk_size=8)
    assert done_before in firsts  # a chunk starts right after the committed ones
    done = await _job(client, h, job["id"])
    assert done["status"] == "done", done
    repeats = len([i for i in range(48) if i % 7 == 6])
    assert (done["rows_done"], done["rows_failed"]) == (48, 1)
    assert done["rows_created"] == 48 - 1 - repeats == await _contacts(tenant)
    a = await _lookup(client, h, "phone", str(13800138600 + 3))  # row 5, repeated by row 8
    assert a is not None and {e["value"] for e in a["emails"]} == {"c3@example.com", "c6@example.com"}
