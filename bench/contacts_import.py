"""Benchmark: contact import hot path (normalise + encrypt + blind index + dedupe + batch upsert).

N rows (env ``BENCH_N``, default 20,000; the goal is stated for 1,000,000 on PostgreSQL) of
mainland mobile numbers, emails and names, 1% duplicated inside the file, imported through
``importer.validate_row`` → ``dedupe_in_file`` → ``upsert_batch`` in batches of 2,000 rows, one
transaction per batch. Database: ``BENCH_DB_URL`` (owner URL, migrated here) or a temporary
SQLite file. Prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_env() -> str:
    url = os.environ.get("BENCH_DB_URL")
    if not url:
        url = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    os.environ.setdefault("TESSERA_DATA_DIR", tempfile.mkdtemp())
    os.environ["TESSERA_DATABASE_URL"] = url
    os.environ["TESSERA_MIGRATION_DATABASE_URL"] = url
    os.environ.setdefault("TESSERA_LOG_LEVEL", "WARNING")
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        check=True,
        cwd=ROOT,
        capture_output=True,
        env=os.environ.copy(),
    )
    return url


async def make_tenant() -> uuid.UUID:
    from tessera.app import init_runtime
    from tessera.core import context
    from tessera.core.db.session import unit_of_work
    from tessera.core.tenancy import service as tenancy
    from tessera.core.tenancy.schemas import TenantCreate
    from tessera.settings import Settings

    init_runtime(Settings())
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as sess:
            tenant, _ = await tenancy.create_tenant(sess, TenantCreate(name=slug, slug=slug, timezone="UTC"))
    return tenant.id


def rows(n: int) -> list[list[str]]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        phone = f"13{rnd.randint(0, 9)}{i:08d}"
        out.append([f"客户{i}", phone, f"user{i}@example.com", rnd.choice(["上海", "北京", "广州"])])
    for _ in range(n // 100):
        out[rnd.randrange(n)] = list(out[rnd.randrange(n)])
    return out


async def main() -> None:
    from tessera.contacts import importer
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    n = int(os.environ.get("BENCH_N", "20000"))
    url = setup_env()
    tid = await make_tenant()
    headers = ["姓名", "手机", "邮箱", "城市"]
    data = rows(n)
    t0 = time.perf_counter()
    created = updated = 0
    with context.tenant_scope(tid):
        mapping = importer.auto_mapping(headers, {})
        records = []
        async with unit_of_work():  # loads the tenant's keys
            for i, cells in enumerate(data, start=2):
                rec, _ = importer.validate_row(i, cells, headers, mapping, {}, "CN")
                if rec:
                    records.append(rec)
        t_norm = time.perf_counter() - t0
        records, dups = importer.dedupe_in_file(records)
        for batch in importer.chunks(records):
            async with unit_of_work() as s:
                c, u, _ = await importer.upsert_batch(s, batch)
                created += c
                updated += u
    elapsed = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "bench": "contacts_import",
                "backend": url.split(":")[0],
                "rows": n,
                "created": created,
                "in_file_duplicates": len(dups),
                "seconds": round(elapsed, 2),
                "rows_per_s": round(n / elapsed),
                "normalise_s": round(t_norm, 2),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
