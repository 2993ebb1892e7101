"""Benchmark: find a contact by phone among 1,000,000 contacts (blind-index lookup).

Each lookup is ``contacts.service.contacts.find_contact_by_phone`` in its own unit of work (a
transaction, as an API request or an inbound SMS has): the raw number is normalised to E.164,
its blind index (keyed HMAC) computed and the identity probed in the unique index, then the
contact loaded — as the application role ``tessera_app`` under row-level security, in a tenant
sharing the tables with a second one. 90% of the lookups hit, 10% miss; written in varied
formats (``138 0013 8000``, ``+86…``). Contacts and identities (phones encrypted with AES-GCM,
blind indexes with the tenant's keys) are computed in Python and loaded by the owner role with
COPY. Prints ONE JSON line:

    {"bench":"contact_lookup","n":...,"lookups":...,"seconds":...,"p50_ms":...,"p99_ms":...,
     "call_p50_ms":...,"call_p99_ms":...,"cpu_ms_per_lookup":...,"database":...}

``p50_ms``/``p99_ms`` include the transaction (begin, tenant setting, commit); ``call_*`` only
the service call. Usage: ``python bench/contact_lookup.py --db postgres [--contacts N]``.
Goal on PostgreSQL: p99 < 5 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _contacts_db import STATE, backend_cpu_seconds, bench_database, make_tenant


def _phone(i: int) -> str:
    return f"13{i % 10}{i:08d}"


async def _load(tid: uuid.UUID, n: int, db: str) -> None:
    """n contacts with one phone identity each, written as the owner (COPY) on PostgreSQL."""
    import datetime as dt

    from tessera.contacts import importer
    from tessera.contacts.models import Contact, ContactIdentity
    from tessera.core import context
    from tessera.core.crypto.keyring import get_keyring
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tid):
        async with unit_of_work() as s:
            await s.connection()  # the transaction's begin hook loads the tenant's keys
        sealer = get_keyring().sealer(tid)
        now = dt.datetime.now(dt.UTC)
        step = 100_000
        for start in range(0, n, step):
            count = min(step, n - start)
            cids = importer.uuid7_hex(count)
            iids = importer.uuid7_hex(count)
            contacts: list[tuple[Any, ...]] = []
            idents: list[tuple[Any, ...]] = []
            for k in range(count):
                e164 = "+86" + _phone(start + k)
                contacts.append((cids[k], tid.hex, now, now, f"C{start + k}", "lead", "{}", e164[-4:]))
                idx = sealer.blind_index("phone", e164)
                idents.append((iids[k], tid.hex, cids[k], "phone", sealer.encrypt(e164), idx, True, now))
            if db == "postgres":
                import psycopg

                url = STATE["owner"].replace("postgresql+psycopg://", "postgresql://")
                async with await psycopg.AsyncConnection.connect(url) as c:
                    async with c.cursor() as cur:
                        async with cur.copy(
                            "COPY contacts (id, tenant_id, created_at, updated_at, name, lifecycle_stage,"
                            " attributes, phone_tail) FROM STDIN"
                        ) as cp:
                            for row in contacts:
                                await cp.write_row(row)
                        async with cur.copy(
                            "COPY contact_identities (id, tenant_id, contact_id, kind, value, value_index,"
                            " is_primary, created_at) FROM STDIN"
                        ) as cp:
                            for row in idents:
                                await cp.write_row(row)
            else:
                from tessera.contacts.repository import ContactRepository

                async with unit_of_work() as s:
                    repo = ContactRepository(s)
                    await repo.insert_rows(
                        Contact,
                        (
                            "id",
                            "created_at",
                            "updated_at",
                            "name",
                            "lifecycle_stage",
                            "attributes",
                            "phone_tail",
                        ),
                        [(c[0], c[2], c[3], c[4], c[5], {}, c[7]) for c in contacts],
                    )
                    await repo.insert_rows(
                        ContactIdentity,
                        ("id", "contact_id", "kind", "value", "value_index", "is_primary", "created_at"),
                        [(r[0], *r[2:]) for r in idents],
                    )
    if db == "postgres":
        import psycopg

        url = STATE["owner"].replace("postgresql+psycopg://", "postgresql://")
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as c:
            for table in ("contacts", "contact_identities"):
                await c.execute(f"VACUUM ANALYZE {table}")


def _formats(i: int, rnd: random.Random) -> str:
    p = _phone(i)
    return rnd.choice([p, "+86" + p, f"{p[:3]} {p[3:7]} {p[7:]}", f"{p[:3]}-{p[3:7]}-{p[7:]}"])


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def run(db: str, n: int, lookups: int) -> dict[str, Any]:
    from tessera.contacts.service.contacts import find_contact_by_phone
    from tessera.core import context
    from tessera.core.db.session import get_database, unit_of_work

    tid, other = await make_tenant(), await make_tenant()
    t0 = time.perf_counter()
    await _load(tid, n, db)
    await _load(other, max(1, n // 10), db)  # the same numbers in another tenant: never found here
    load_s = time.perf_counter() - t0
    rnd = random.Random(11)
    queries = [(i, _formats(i, rnd)) for i in (rnd.randrange(n) for _ in range(lookups))]
    misses = [(-1, _formats(n + rnd.randrange(n), rnd)) for _ in range(lookups // 10)]
    queries = queries[: lookups - len(misses)] + misses
    rnd.shuffle(queries)
    total: list[float] = []
    calls: list[float] = []
    with context.tenant_scope(tid):
        for i, raw in queries[:50]:  # warm the pool and caches
            async with unit_of_work() as s:
                await find_contact_by_phone(s, raw)
        cpu0, db0, w0 = time.process_time(), await backend_cpu_seconds(), time.perf_counter()
        for i, raw in queries:
            t = time.perf_counter()
            async with unit_of_work() as s:
                c = time.perf_counter()
                found = await find_contact_by_phone(s, raw)
                calls.append(time.perf_counter() - c)
            total.append(time.perf_counter() - t)
            if (found is None) != (i < 0) or (found is not None and found.name != f"C{i}"):
                raise SystemExit(f"wrong answer for {raw}: {found and found.name}")
        seconds = time.perf_counter() - w0
        cpu, db1 = time.process_time() - cpu0, await backend_cpu_seconds()
    await get_database().dispose()
    return {
        "bench": "contact_lookup",
        "n": n,
        "lookups": len(queries),
        "seconds": round(seconds, 3),
        "lookups_per_s": round(len(queries) / seconds),
        "p50_ms": round(_pct(total, 0.5) * 1000, 3),
        "p99_ms": round(_pct(total, 0.99) * 1000, 3),
        "call_p50_ms": round(_pct(calls, 0.5) * 1000, 3),
        "call_p99_ms": round(_pct(calls, 0.99) * 1000, 3),
        "cpu_ms_per_lookup": round(cpu / len(queries) * 1000, 3),
        "db_cpu_ms_per_lookup": None
        if db1 is None or db0 is None
        else round((db1 - db0) / len(queries) * 1000, 3),
        "load_seconds": round(load_s, 1),
        "database": db,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--db", choices=["sqlite", "postgres"], default=os.environ.get("TESSERA_BENCH_DB", "sqlite")
    )
    p.add_argument("--contacts", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=5_000)
    args = p.parse_args()
    with bench_database(args.db):
        result = asyncio.run(run(args.db, args.contacts, args.lookups))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
