"""Shared set-up of the customer-data benchmarks (contacts_import, segment_count,
contact_lookup): a fresh migrated database, a tenant, and the database's CPU time.

``--db postgres`` creates a database with ``TESSERA_BENCH_PG_ADMIN_URL`` (default
postgresql://postgres@127.0.0.1:55432/postgres), migrates it as the owner and connects the
application as the non-owner role ``tessera_app``, so row-level security is on as in production;
the database is dropped at the end. ``--db sqlite`` uses a temporary file.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE: dict[str, str] = {}


def _admin() -> str:
    return os.environ.get("TESSERA_BENCH_PG_ADMIN_URL", "postgresql://postgres@127.0.0.1:55432/postgres")


@contextlib.contextmanager
def bench_database(kind: str) -> Iterator[dict[str, str]]:
    from sqlalchemy import create_engine, text

    data_dir = tempfile.mkdtemp(prefix="tessera-bench-")
    name = ""
    if kind == "sqlite":
        app_url = owner_url = f"sqlite+aiosqlite:///{data_dir}/bench.db"
    else:
        name = f"tessera_bench_{uuid.uuid4().hex[:8]}"
        eng = create_engine(
            _admin().replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        with eng.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        eng.dispose()
        base = _admin().rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        host = base.split("@", 1)[1]
        app_url = f"postgresql+psycopg://tessera_app:tessera_app@{host}/{name}"
        owner_url = f"{base}/{name}"
    os.environ.update(
        TESSERA_DATA_DIR=data_dir,
        TESSERA_DATABASE_URL=app_url,
        TESSERA_MIGRATION_DATABASE_URL=owner_url,
        TESSERA_EMBEDDED_WORKERS="false",
        TESSERA_LOG_LEVEL="WARNING",
    )
    env = {**os.environ}
    if name:
        env["TESSERA_DB_APP_ROLE"] = "tessera_app"
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        check=True,
        cwd=ROOT,
        env=env,
        capture_output=True,
    )
    STATE.update(app=app_url, owner=owner_url, name=name, kind=kind)
    try:
        yield dict(STATE)
    finally:
        if name:
            eng = create_engine(
                _admin().replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
            )
            with eng.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            eng.dispose()


async def make_tenant() -> uuid.UUID:
    from tessera.app import init_runtime
    from tessera.core import context
    from tessera.core.db.session import unit_of_work
    from tessera.core.logging import configure_logging
    from tessera.core.tenancy import service as tenancy
    from tessera.core.tenancy.schemas import TenantCreate
    from tessera.settings import Settings, reset_settings_cache

    reset_settings_cache()
    settings = Settings()
    configure_logging(settings.log_level, settings.log_json)  # WARNING: stdout keeps one JSON line
    init_runtime(settings)
    slug = f"bench-{uuid.uuid4().hex[:8]}"
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as sess:
            tenant, _ = await tenancy.create_tenant(sess, TenantCreate(name=slug, slug=slug, timezone="UTC"))
    return tenant.id


async def backend_cpu_seconds() -> float | None:
    """CPU seconds used so far by the server processes serving the bench database (PostgreSQL on
    this host, read from /proc); None on SQLite or when /proc is not readable."""
    if not STATE.get("name"):
        return None
    import psycopg

    try:
        async with await psycopg.AsyncConnection.connect(_admin(), autocommit=True) as c:
            cur = await c.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (STATE["name"],))
            pids = [r[0] for r in await cur.fetchall()]
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0.0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
        return total
    except (OSError, psycopg.Error):
        return None
