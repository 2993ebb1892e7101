"""Console page latency: server-side render time of the main admin pages, in process.

Creates a SQLite (default) or ``TESSERA_DATABASE_URL`` installation in a temporary directory,
a workspace with ``BENCH_ROWS`` rows (default 10,000) in each listed table: users (the first
``BENCH_USERS``, default 50, through the service, the rest inserted in bulk with the same
password hash), audit events and background jobs. It signs in through the console's own form and
requests each page ``BENCH_REPEAT`` times (default 100) through httpx's ASGI transport (no
network, so the figure is the app's own cost). Counts SQL statements per request too: list pages
must not grow with the number of rows in the table. Goal: every list page under 150 ms.

Prints one JSON line::

    {"bench":"console_pages","db":"sqlite","users":400,"pages":{"home":{"p50_ms":…,"p95_ms":…,
     "queries":…}, …}}
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
USERS = int(os.environ.get("BENCH_USERS", "50"))
ROWS = int(os.environ.get("BENCH_ROWS", "10000"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "100"))
PASSWORD = "bench-password-123"


async def _bulk_rows(tenant_id: Any, role_id: Any) -> None:
    """Fill users, audit events and jobs up to ROWS rows each, in batches."""
    from sqlalchemy import select

    from tessera.core import context
    from tessera.core.audit import service as audit
    from tessera.core.db.session import unit_of_work
    from tessera.core.identity.models import User
    from tessera.core.jobs import service as jobs

    with context.tenant_scope(tenant_id):
        async with unit_of_work() as s:
            pw = (await s.execute(select(User.password_hash).limit(1))).scalar_one()
        for start in range(USERS, ROWS, 2000):
            async with unit_of_work() as s:
                s.add_all(
                    User(
                        email=f"user{i}@bench.example.com",
                        name=f"User {i:05d}",
                        role_id=role_id,
                        password_hash=pw,
                    )
                    for i in range(start, min(ROWS, start + 2000))
                )
        for start in range(0, ROWS, 1000):
            async with unit_of_work() as s:
                for i in range(start, min(ROWS, start + 1000)):
                    await audit.record(s, "bench.touch", "user", str(i), changes={"n": [i - 1, i]})
        for start in range(0, ROWS, 2000):
            async with unit_of_work() as s:
                await jobs.enqueue_many(
                    s,
                    "bench.noop",
                    [{"n": i} for i in range(start, min(ROWS, start + 2000))],
                    queue="bench",
                    run_at=dt.datetime(2099, 1, 1, tzinfo=dt.UTC),
                )


async def run() -> dict[str, Any]:
    import httpx
    from sqlalchemy import event

    from tessera.app import create_app
    from tessera.core import context
    from tessera.core.db.session import get_database, unit_of_work
    from tessera.core.identity import service
    from tessera.core.identity.repository import RoleRepository
    from tessera.core.identity.schemas import UserCreate
    from tessera.core.tenancy import service as tenancy
    from tessera.core.tenancy.schemas import TenantCreate

    app = create_app()
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            await tenancy.create_tenant(
                s,
                TenantCreate(
                    name="Bench",
                    slug="bench",
                    owner_email="owner@bench.example.com",
                    owner_name="Owner",
                    owner_password=PASSWORD,
                ),
            )
            member = (await RoleRepository(s).by_key("member")).id  # type: ignore[union-attr]
            for i in range(USERS):
                await service.create_user(
                    s, UserCreate(email=f"user{i}@bench.example.com", name=f"User {i:05d}", role_id=member)
                )
            tenant_id = (await tenancy.get_by_slug(s, "bench")).id  # type: ignore[union-attr]
    await _bulk_rows(tenant_id, member)
    queries = 0

    def count(*_: Any) -> None:
        nonlocal queries
        queries += 1

    event.listen(get_database().engine.sync_engine, "before_cursor_execute", count)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as c:
        r = await c.post(
            "/console/login",
            data={"workspace": "bench", "email": "owner@bench.example.com", "password": PASSWORD},
        )
        assert r.status_code == 303, r.text
        r = await c.get("/console/admin/users?name__contains=User%2000001&limit=1")
        uid = re.search(r'/console/admin/users/([0-9a-f-]{36})"', r.text).group(1)  # type: ignore[union-attr]
        pages = {
            "home": "/console/",
            "users": "/console/admin/users",
            "users_filtered": "/console/admin/users?name__contains=User%2001&sort=name",
            "users_page_7": None,
            "user_detail": f"/console/admin/users/{uid}",
            "audit": "/console/admin/audit",
            "audit_filtered": "/console/admin/audit?action=bench.touch",
            "jobs": "/console/admin/jobs",
            "jobs_filtered": "/console/admin/jobs?status=queued&sort=run_at",
            "roles": "/console/admin/roles",
        }
        r = await c.get("/console/admin/users?limit=50")
        for _ in range(5):
            nxt = re.search(r'href="(\?[^"]*cursor=[^"]+)"', r.text)
            r = await c.get("/console/admin/users" + nxt.group(1).replace("&amp;", "&"))  # type: ignore[union-attr]
        pages["users_page_7"] = "/console/admin/users" + re.search(  # type: ignore[union-attr]
            r'href="(\?[^"]*cursor=[^"]+)"', r.text
        ).group(1).replace("&amp;", "&")
        out: dict[str, Any] = {}
        for name, path in pages.items():
            assert path
            times = []
            queries = 0
            for _ in range(REPEAT):
                t = time.perf_counter()
                r = await c.get(path)
                times.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, (path, r.status_code)
            times.sort()
            out[name] = {
                "p50_ms": round(statistics.median(times), 2),
                "p95_ms": round(times[int(len(times) * 0.95) - 1], 2),
                "queries": round(queries / REPEAT, 1),
            }
    return out


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        url = os.environ.get("TESSERA_DATABASE_URL") or f"sqlite+aiosqlite:///{Path(tmp) / 'tessera.db'}"
        os.environ.update(
            TESSERA_DATA_DIR=tmp,
            TESSERA_DATABASE_URL=url,
            TESSERA_LOG_LEVEL="WARNING",
            TESSERA_EMBEDDED_WORKERS="false",
            TESSERA_ARGON2_TIME_COST="1",
            TESSERA_ARGON2_MEMORY_COST="1024",
        )
        os.environ.setdefault("TESSERA_MIGRATION_DATABASE_URL", url)
        os.environ.setdefault("TESSERA_SUBSCRIPTION_DEFAULT_PLAN", "enterprise")
        subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
            check=True,
            cwd=ROOT,
            capture_output=True,
        )
        pages = asyncio.run(run())
        db = "postgres" if url.startswith("postgresql") else "sqlite"
        print(
            json.dumps({"bench": "console_pages", "db": db, "rows": ROWS, "repeat": REPEAT, "pages": pages})
        )


if __name__ == "__main__":
    main()
