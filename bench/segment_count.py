"""Benchmark: counting a 3-condition segment over 1,000,000 contacts and 10,000,000 events.

The segment: city = 上海 (an attribute) AND has tag "vip" AND did "purchase" in the last 30
days, counted by ``contacts.service.segments.count_matching`` (the segment compiler → one SQL
statement with EXISTS semi-joins) as the application role ``tessera_app`` under row-level
security, in a tenant that shares the tables with a second tenant holding 10% more rows.

Data are generated inside PostgreSQL by the owner role (INSERT … SELECT generate_series, secondary
indexes dropped during the load and rebuilt, then VACUUM ANALYZE). The count is checked against
an independent owner-side SQL query. Prints ONE JSON line:

    {"bench":"segment_count","n":<contacts>,"events":...,"matching":...,"seconds":<median>,
     "p_max_seconds":...,"first_seconds":...,"cpu_seconds":...,"db_cpu_seconds":...,"database":...}

``seconds`` is the median of ``--repeat`` counts (first one reported apart). Usage:
``python bench/segment_count.py --db postgres [--contacts N] [--events M]``; ``--db sqlite``
generates the data with ``INSERT … SELECT`` over a recursive CTE (small sizes only).
Goal on PostgreSQL: < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _contacts_db import STATE, backend_cpu_seconds, bench_database, make_tenant

CITIES = ["上海", "北京", "广州", "深圳", "杭州", "成都"]
EVENTS = ["purchase", "page_view", "add_to_cart", "login", "email_open"]


def _rules(vip: uuid.UUID) -> dict[str, Any]:
    return {
        "op": "and",
        "rules": [
            {"type": "attribute", "field": "city", "op": "eq", "value": "上海"},
            {"type": "tag", "match": "any", "tag_ids": [str(vip)]},
            {"type": "event", "name": "purchase", "within_days": 30},
        ],
    }


def _pg_load(
    owner_url: str, tenants: list[tuple[uuid.UUID, int, int]], vip: dict[uuid.UUID, uuid.UUID]
) -> None:
    """Contacts, tags, links and events of each (tenant, contacts, events), as the owner."""
    import psycopg

    url = owner_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET maintenance_work_mem = '256MB'")
        c.execute("SET session_replication_role = replica")  # generated rows are consistent: no FK triggers
        drop: list[tuple[str, str]] = []
        for table in ("contacts", "contact_tag_links", "contact_events"):
            rows = c.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = %s AND i.indexname NOT IN "
                "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
                (table, table),
            ).fetchall()
            for name, ddl in rows:
                c.execute(f'DROP INDEX "{name}"')
                drop.append((name, ddl))
        for k, (tid, n, m) in enumerate(tenants):
            prefix = f"{k:08x}-0000-7000-8000-"
            c.execute(
                "INSERT INTO contacts (id, tenant_id, created_at, updated_at, name, city, lifecycle_stage,"
                " attributes, source) SELECT (%(p)s || lpad(to_hex(i), 12, '0'))::uuid, %(t)s, now(), now(),"
                " 'C' || i, (%(cities)s::text[])[1 + i %% 6], 'lead', '{}', 'bench'"
                " FROM generate_series(0::bigint, %(n)s - 1) i",
                {"p": prefix, "t": tid, "n": n, "cities": CITIES},
            )
            tag_ids = {"vip": vip[tid], "new": uuid.uuid4()}
            for name, tag_id in tag_ids.items():
                c.execute(
                    "INSERT INTO contact_tags (id, tenant_id, created_at, updated_at, name) VALUES (%s, %s, now(), now(), %s)",
                    (tag_id, tid, name),
                )
            c.execute(  # vip: 30% of contacts; new: 20%
                "INSERT INTO contact_tag_links (tenant_id, contact_id, tag_id, source, created_at)"
                " SELECT %(t)s, (%(p)s || lpad(to_hex(i), 12, '0'))::uuid, CASE WHEN i %% 10 < 3 THEN %(vip)s"
                " ELSE %(new)s END, 'import', now() FROM generate_series(0::bigint, %(n)s - 1) i WHERE i %% 10 < 5",
                {"t": tid, "p": prefix, "n": n, "vip": tag_ids["vip"], "new": tag_ids["new"]},
            )
            c.execute(  # spread over contacts, names and the last 180 days
                "INSERT INTO contact_events (id, tenant_id, contact_id, name, properties, occurred_at)"
                " SELECT (%(ep)s || lpad(to_hex(i), 12, '0'))::uuid, %(t)s,"
                " (%(p)s || lpad(to_hex((i * 7919) %% %(n)s), 12, '0'))::uuid, (%(names)s::text[])[1 + (i / 7) %% 5],"
                " '{}', now() - ((i * 104729) %% 15552000) * interval '1 second'"
                " FROM generate_series(0::bigint, %(m)s - 1) i",
                {"ep": f"{k:08x}-0001-7000-8000-", "t": tid, "p": prefix, "n": n, "m": m, "names": EVENTS},
            )
        for _name, ddl in drop:
            c.execute(ddl)
        c.execute("SET session_replication_role = DEFAULT")
        for table in ("contacts", "contact_tags", "contact_tag_links", "contact_events"):
            c.execute(f"VACUUM ANALYZE {table}")


def _pg_expected(owner_url: str, tid: uuid.UUID, vip: uuid.UUID) -> int:
    import psycopg

    with psycopg.connect(owner_url.replace("postgresql+psycopg://", "postgresql://")) as c:
        row = c.execute(
            "SELECT count(*) FROM contacts c WHERE c.tenant_id = %(t)s AND c.merged_into_id IS NULL"
            " AND c.city = '上海' AND c.id IN (SELECT contact_id FROM contact_tag_links WHERE tag_id = %(v)s)"
            " AND c.id IN (SELECT contact_id FROM contact_events WHERE tenant_id = %(t)s AND name = 'purchase'"
            " AND occurred_at >= now() - interval '30 days')",
            {"t": tid, "v": vip},
        ).fetchone()
        assert row is not None
        return int(row[0])


async def _sqlite_load(tid: uuid.UUID, vip: uuid.UUID, n: int, m: int) -> int:
    """Small SQLite data through the app's session (no RLS there); returns the expected count."""
    import datetime as dt

    from sqlalchemy import insert

    from tessera.contacts.models import Contact, ContactEvent, ContactTag, Tag
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    now = dt.datetime.now(dt.UTC)
    ids = [uuid.uuid4() for _ in range(n)]
    expected_ids: set[uuid.UUID] = set()
    with context.tenant_scope(tid):
        async with unit_of_work() as s:
            s.add(Tag(id=vip, name="vip"))
            await s.flush()
            await s.execute(
                insert(Contact),
                [{"id": ids[i], "tenant_id": tid, "name": f"C{i}", "city": CITIES[i % 6]} for i in range(n)],
            )
            await s.execute(
                insert(ContactTag),
                [{"tenant_id": tid, "contact_id": ids[i], "tag_id": vip} for i in range(n) if i % 10 < 3],
            )
            events = []
            for i in range(m):
                j = (i * 7919) % n
                name = EVENTS[(i // 7) % 5]
                at = now - dt.timedelta(seconds=(i * 104729) % 15552000)
                events.append({"tenant_id": tid, "contact_id": ids[j], "name": name, "occurred_at": at})
                if name == "purchase" and at >= now - dt.timedelta(days=30) and j % 6 == 0 and j % 10 < 3:
                    expected_ids.add(ids[j])
            await s.execute(insert(ContactEvent), events)
    return len(expected_ids)


async def run(db: str, n: int, m: int, repeat: int, explain: bool) -> dict[str, Any]:
    from sqlalchemy import func, select

    from tessera.contacts.models import Contact
    from tessera.contacts.segments import compile_rules
    from tessera.contacts.service.segments import count_matching
    from tessera.core import context
    from tessera.core.db.session import get_database, unit_of_work

    tid, other = await make_tenant(), await make_tenant()
    vip = {tid: uuid.uuid4(), other: uuid.uuid4()}
    t0 = time.perf_counter()
    if db == "postgres":
        _pg_load(STATE["owner"], [(tid, n, m), (other, n // 10, m // 10)], vip)
        expected = _pg_expected(STATE["owner"], tid, vip[tid])
    else:
        expected = await _sqlite_load(tid, vip[tid], n, m)
    load_s = time.perf_counter() - t0
    rules = _rules(vip[tid])
    times: list[float] = []
    got = -1
    cpu0, db0 = time.process_time(), await backend_cpu_seconds()
    with context.tenant_scope(tid):
        for _ in range(repeat):
            async with unit_of_work() as s:
                t = time.perf_counter()
                got = await count_matching(s, rules)
                times.append(time.perf_counter() - t)
        if explain and db == "postgres":
            async with unit_of_work() as s:
                stmt = (
                    select(func.count())
                    .select_from(Contact)
                    .where(Contact.merged_into_id.is_(None), compile_rules(rules))
                )
                compiled = stmt.compile(dialect=s.get_bind().dialect, compile_kwargs={"literal_binds": True})
                print(str(compiled), file=sys.stderr)
    cpu = time.process_time() - cpu0
    db_cpu = await backend_cpu_seconds()
    await get_database().dispose()
    if got != expected:
        raise SystemExit(f"segment count {got} != expected {expected}")
    return {
        "bench": "segment_count",
        "n": n,
        "events": m,
        "matching": got,
        "seconds": round(statistics.median(times), 4),
        "first_seconds": round(times[0], 4),
        "max_seconds": round(max(times), 4),
        "repeat": repeat,
        "cpu_seconds": round(cpu / repeat, 4),
        "db_cpu_seconds": None if db_cpu is None or db0 is None else round((db_cpu - db0) / repeat, 4),
        "load_seconds": round(load_s, 1),
        "database": db,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument(
        "--db", choices=["sqlite", "postgres"], default=os.environ.get("TESSERA_BENCH_DB", "sqlite")
    )
    p.add_argument("--contacts", type=int, default=1_000_000)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--explain", action="store_true", help="print the compiled SQL to stderr")
    args = p.parse_args()
    if args.db == "sqlite" and args.contacts > 200_000:
        args.contacts, args.events = 20_000, 200_000  # full sizes are for PostgreSQL
    with bench_database(args.db):
        result = asyncio.run(run(args.db, args.contacts, args.events, args.repeat, args.explain))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
