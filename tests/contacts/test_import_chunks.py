"""The streamed import: several chunks, duplicates across chunks, existing contacts, progress,
the error file, cancel between chunks, tenant isolation of the bulk writes and a 50 MB upload."""

from __future__ import annotations

import csv
import io
import os
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import TenantWorld
from tests.contacts.conftest import make_contact, run_jobs

ROWS = [
    "姓名,手机,邮箱,城市,生日,标签",
    "甲一,13800138101,a1@example.com,上海,1990-01-01,vip",  # 2
    "甲二,13800138102,,北京,,",  # 3
    "坏号,12345,,,,",  # 4 wrong phone
    "甲三,13800138103,a3@example.com,,1991-02-02,",  # 5
    "甲一重复,13800138101,a1b@example.com,杭州,1992-03-03,new",  # 6 duplicate of row 2 (next chunk)
    "老客,13800138199,old@example.com,深圳,,",  # 7 existing contact → updated
    ",13800138104,,,,",  # 8 empty name
    "甲二邮箱,,a2@example.com,,,",  # 9
    "甲二又来,13800138102,,广州,1993-04-04,",  # 10 same phone as row 3 (two chunks earlier)
]


async def _upload(client: httpx.AsyncClient, h: dict[str, str], rows: list[str]) -> dict[str, Any]:
    r = await client.post("/v1/imports?filename=c.csv", content="\n".join(rows).encode(), headers=h)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def _start(tenant: TenantWorld, job_id: str) -> None:
    from tessera.contacts.models import DataJob
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            job = await s.get(DataJob, uuid.UUID(job_id))
            assert job is not None
            job.status = "queued"


async def _job(client: httpx.AsyncClient, h: dict[str, str], job_id: str) -> dict[str, Any]:
    return dict((await client.get(f"/v1/imports/{job_id}", headers=h)).json())


async def _lookup(
    client: httpx.AsyncClient, h: dict[str, str], kind: str, value: str
) -> dict[str, Any] | None:
    r = await client.get("/v1/contacts/lookup", params={"kind": kind, "value": value}, headers=h)
    return dict(r.json()) if r.status_code == 200 else None


async def test_chunks_dedupe_across_chunks_and_report_progress(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    from tessera.contacts.service.imports import run_import

    h = tenant.headers("admin")
    old = await make_contact(client, h, name="Old", phones=["13800138199"], city=None)
    job = await _upload(client, h, ROWS)
    assert job["total_rows"] == 9
    r = await client.post(f"/v1/imports/{job['id']}/dry-run", headers=h)
    report = r.json()
    got = {(p["row"], p["field"], p["rule"]) for p in report["problems"]}
    assert (4, "phone", "invalid") in got and (8, "name", "required") in got
    assert (6, "phone", "duplicate_in_file") in got and (10, "phone", "duplicate_in_file") in got
    assert report["invalid_rows"] == 2 and report["duplicates_in_file"] == 2

    await _start(tenant, job["id"])
    await run_import(tenant.tenant_id, uuid.UUID(job["id"]), chunk_size=3)  # 3 chunks
    done = await _job(client, h, job["id"])
    assert done["status"] == "done", done
    assert done["rows_done"] == 9 and done["rows_failed"] == 2
    # Created: rows 2, 3, 5, 9 (row 9's email is new); updated: row 7 (existing contact).
    # Rows 6 and 10 repeat identities of earlier rows: merged, neither created nor updated.
    assert (done["rows_created"], done["rows_updated"]) == (4, 1)

    first = await _lookup(client, h, "phone", "13800138101")
    assert first is not None
    assert first["name"] == "甲一" and first["city"] == "上海" and first["birthday"] == "1990-01-01"
    assert {e["value"] for e in first["emails"]} == {"a1@example.com", "a1b@example.com"}
    again = await _lookup(client, h, "email", "a1b@example.com")
    assert again is not None and again["id"] == first["id"]
    # The later row filled only the gaps of row 3's contact (city, birthday were empty).
    second = await _lookup(client, h, "phone", "13800138102")
    assert second is not None
    assert second["name"] == "甲二" and second["city"] == "北京" and second["birthday"] == "1993-04-04"
    updated = await _lookup(client, h, "phone", "13800138199")
    assert updated is not None and updated["id"] == old["id"]
    assert updated["name"] == "老客" and updated["city"] == "深圳"
    assert await _lookup(client, h, "phone", "13800138104") is None
    assert len(first["tag_ids"]) == 2  # "vip" from row 2 and "new" from its duplicate, row 6

    r = await client.get(f"/v1/imports/{job['id']}/errors", headers=h)
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert rows[0][0] == "row" and [x[0] for x in rows[1:]] == ["4", "8"]
    assert "phone: invalid" in rows[1][-1] and rows[2][1] == ""


async def test_cancel_between_chunks_stops_cleanly(
    client: httpx.AsyncClient, tenant: TenantWorld, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import func, select

    from tessera.contacts.models import Contact
    from tessera.contacts.service import imports
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    h = tenant.headers("admin")
    rows = ["Name,Mobile"] + [f"P{i},1390013{i:04d}" for i in range(10)]
    job = await _upload(client, h, rows)
    await _start(tenant, job["id"])
    real = imports._write_chunk
    calls = []

    async def write_then_cancel(*args: Any, **kw: Any) -> bool:
        ok = await real(*args, **kw)
        calls.append(ok)
        if len(calls) == 1:  # someone presses cancel while the second chunk is prepared
            with context.tenant_scope(tenant.tenant_id):
                async with unit_of_work() as s:
                    await imports.cancel(s, uuid.UUID(job["id"]))
        return ok

    monkeypatch.setattr(imports, "_write_chunk", write_then_cancel)
    await imports.run_import(tenant.tenant_id, uuid.UUID(job["id"]), chunk_size=4)
    out = await _job(client, h, job["id"])
    assert out["status"] == "cancelled" and out["finished_at"] is not None
    # the chunk after the cancel rolls back (on PostgreSQL the one after it may have started)
    assert out["rows_done"] == 4 and out["rows_created"] == 4 and calls[0] is True and not any(calls[1:])
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            assert (await s.execute(select(func.count()).select_from(Contact))).scalar_one() == 4


async def test_bulk_writes_stay_in_the_tenant(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    """The same phone imported by two tenants makes two contacts, each visible only to its
    tenant (the bulk insert sets tenant_id itself; the lookup is filtered by the guard)."""
    for world in (tenant, other_tenant):
        h = world.headers("admin")
        job = await _upload(client, h, ["Name,Mobile,Email", f"{world.slug},13800138301,s@example.com"])
        assert (await client.post(f"/v1/imports/{job['id']}/start", headers=h)).status_code == 202
        await run_jobs()
        assert (await _job(client, h, job["id"]))["rows_created"] == 1
    a = await _lookup(client, tenant.headers("admin"), "phone", "13800138301")
    b = await _lookup(client, other_tenant.headers("admin"), "phone", "13800138301")
    assert a is not None and b is not None and a["id"] != b["id"]
    assert a["name"] == tenant.slug and b["name"] == other_tenant.slug
    r = await client.get(f"/v1/contacts/{b['id']}", headers=tenant.headers("admin"))
    assert r.status_code == 404


async def test_fifty_megabyte_file(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    """A 50 MB CSV (a wide skipped column) is scanned, streamed and imported whole.

    Through the service: the HTTP layer's general body limit (10 MB by default) is not the
    importer's to change."""
    from tessera.contacts.service import imports
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    h = tenant.headers("admin")
    filler = "x" * 9_990
    n = 5_000
    lines = ["Name,Mobile,Notes"] + [f"N{i},1370013{i:04d},{filler}" for i in range(n)]
    raw = ("\n".join(lines) + "\n").encode()
    assert len(raw) >= 50 * 1000 * 1000
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            job = await imports.upload(s, "big.csv", raw)
            job_id = str(job.id)
    del raw
    out = await _job(client, h, job_id)
    assert out["total_rows"] == n and out["mapping"]["Notes"] == "skip"
    assert (await client.post(f"/v1/imports/{job_id}/start", headers=h)).status_code == 202
    await run_jobs()
    done = await _job(client, h, job_id)
    assert done["status"] == "done", done
    assert (done["rows_created"], done["rows_failed"], done["rows_done"]) == (n, 0, n)
    last = await _lookup(client, h, "phone", f"1370013{n - 1:04d}")
    assert last is not None and last["name"] == f"N{n - 1}"


async def test_resume_starts_after_rows_done(client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    """A run that stopped after a chunk (worker restart) resumes after ``rows_done``."""
    from tessera.contacts.models import DataJob
    from tessera.contacts.service.imports import run_import
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    h = tenant.headers("admin")
    rows = ["Name,Mobile"] + [f"R{i},1360013{i:04d}" for i in range(6)]
    job = await _upload(client, h, rows)
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            found = await s.get(DataJob, uuid.UUID(job["id"]))
            assert found is not None
            found.status, found.rows_done = "running", 3  # the first chunk of 3 was written before
    await run_import(tenant.tenant_id, uuid.UUID(job["id"]), chunk_size=3)
    done = await _job(client, h, job["id"])
    assert done["status"] == "done" and done["rows_done"] == 6 and done["rows_created"] == 3
    assert await _lookup(client, h, "phone", "13600130002") is None  # in the skipped chunk
    assert await _lookup(client, h, "phone", "13600130003") is not None


def test_bulk_ids_are_ordered_version_7_uuids() -> None:
    from tessera.contacts.importer import uuid7_hex

    ids = uuid7_hex(5000)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert not set(ids) & set(uuid7_hex(5000))
    for n in (1, 2, 3, 17):  # each id its 32 digits, whatever the count
        few = uuid7_hex(n)
        assert len(few) == n and all(len(i) == 32 and uuid.UUID(i).version == 7 for i in few)
    assert uuid7_hex(0) == []


def test_bulk_ids_of_a_call_share_their_millisecond_and_increase_across_a_counter_carry(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What ``CreatedIds`` relies on, also when the counter carries into ``rand_a`` within the
    call (the id-by-id path)."""
    from tessera.contacts import importer

    real = os.urandom
    start = (1 << 30) - 3  # three ids before the carry
    monkeypatch.setattr(importer.os, "urandom", lambda n: (start << 7).to_bytes(6) if n == 6 else real(n))
    ids = importer.uuid7_hex(10)
    assert ids == sorted(ids) and len(set(ids)) == 10 and len({i[:12] for i in ids}) == 1
    assert ids[2][12:16] != ids[3][12:16]  # rand_a moved on


def test_created_ids_answers_like_a_set() -> None:
    from tessera.contacts.importer import CreatedIds, uuid7_hex

    created, want = CreatedIds(), set()
    chunks = [uuid7_hex(n) for n in (500, 1, 300, 300)]
    for ids in chunks:
        created.add_sorted(ids)
        want.update(ids)
    created.add_sorted([])
    odd = ["f" * 32, "0" * 32]  # not one call's ids: kept one by one
    created.add_sorted(odd)
    created.update(["a" * 32])
    want.update([*odd, "a" * 32])
    gone = [chunks[0][7], chunks[2][0], "a" * 32]
    created.difference_update(gone)
    want.difference_update(gone)
    probes = [*want, *gone, *uuid7_hex(200), "b" * 32, "short", None]
    assert [p in created for p in probes] == [p in want for p in probes]


def test_ramped_chunk_sizes_are_small_at_both_ends_and_cover_the_file() -> None:
    from tessera.contacts.importer import ramped_sizes

    def cuts(size: int, total: int, rows: int | None = None) -> list[int]:
        f, done, out = ramped_sizes(size, total), 0, []
        while done < (rows or total):
            out.append(f(done))
            done += out[-1]
        return out

    got = cuts(20_000, 1_000_000)
    assert got[:5] == [2_500, 2_500, 5_000, 10_000, 20_000]
    assert got[-5:] == [20_000, 10_000, 5_000, 2_500, 2_500]
    assert sum(got) == 1_000_000 and set(got[4:-4]) == {20_000}
    odd = cuts(20_000, 123_457)
    assert odd[:4] == [2_500, 2_500, 5_000, 10_000] and odd[-1] <= 2_500 and sum(odd) >= 123_457
    assert set(cuts(20_000, 79_999)) == {20_000}  # under four chunks: unchanged
    assert set(cuts(3_000, 1_000_000)) == {3_000}  # small chunks: unchanged
    more = cuts(20_000, 100_000, rows=150_000)  # more rows than counted: whole chunks after
    assert more[-7:] == [10_000, 5_000, 2_500, 2_500, 20_000, 20_000, 20_000]


def test_read_chunks_strips_cells_drops_blank_rows_and_pads(tmp_path: Any) -> None:
    from tessera.contacts import importer

    path = tmp_path / "f.csv"
    path.write_text("\n , \n Name , Mobile\nA ,13800138000\n\n  ,  \nB\nC,1,extra\n", encoding="utf-8")
    headers, gen = importer.read_chunks(path, "f.csv", "utf-8", size=2)
    assert headers == ["Name", "Mobile"]
    assert list(gen) == [[(2, ["A", "13800138000"]), (3, ["B", ""])], [(4, ["C", "1"])]]
    parsed = importer.parse(path.read_bytes(), "f.csv")  # the whole-file parser agrees
    assert parsed.headers == headers and parsed.rows == [["A", "13800138000"], ["B", ""], ["C", "1"]]


@pytest.mark.parametrize(
    "text",
    [
        "name,phone\nA,1\n\n  ,  \n\u3000,\u3000\n上海\n,,\nB,2",  # no newline at the end
        "\ufeffname,phone\nA,1\n\u00a0\n\x1f,\x1c\n张三,\n\n",  # BOM, NBSP and separators
        "\n\n  ,\nname,phone\nA,1\n",  # blank lines before the header
        "name,phone\n",
        "name\n" + "x\n" * 50 + " \n" * 3 + "y",
    ],
)
def test_plain_row_count_agrees_with_the_csv_count(text: str) -> None:
    from tessera.contacts import importer

    raw = text.encode("utf-8")
    rows = list(importer._clean(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))))
    assert importer._plain_rows(raw) == len(rows) - 1
    assert importer.scan(raw, "f.csv").total_rows == len(rows) - 1


def test_plain_row_count_leaves_quoted_and_odd_files_to_the_csv_reader() -> None:
    from tessera.contacts import importer

    for raw in (b'name\n"a\nb"\n', b"name\r\na\r\n", b"name\na\x00b\n", b"  \n , \n"):
        assert importer._plain_rows(raw) is None
    assert importer.scan(b'name,note\n"A","x\ny"\nB,z\n', "f.csv").total_rows == 2
