"""Row-level security helpers used by migrations (PostgreSQL only; no-ops on SQLite)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

POLICY = "tenant_isolation"
# The tenant in scope as a sub-select: PostgreSQL evaluates it once per statement (an InitPlan)
# instead of reading the setting and parsing the UUID for every row it checks, which was most
# of a large scan's time and a fifth of a bulk insert's (migration 0013).
PREDICATE = "tenant_id = (SELECT nullif(current_setting('app.tenant_id', true), '')::uuid)"
# The per-row form migrations 0001-0012 created (what 0013's downgrade restores).
PREDICATE_PER_ROW = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid"


def _is_pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def enable(*tables: str) -> None:
    """Enable and force RLS on tenant-owned tables: no tenant set means no rows."""
    if not _is_pg():
        return
    for t in tables:
        op.execute(f'ALTER TABLE "{t}" ENABLE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE "{t}" FORCE ROW LEVEL SECURITY')
        op.execute(f'CREATE POLICY {POLICY} ON "{t}" USING ({PREDICATE}) WITH CHECK ({PREDICATE})')


def disable(*tables: str) -> None:
    if not _is_pg():
        return
    for t in tables:
        op.execute(f'DROP POLICY IF EXISTS {POLICY} ON "{t}"')
        op.execute(f'ALTER TABLE "{t}" NO FORCE ROW LEVEL SECURITY')
        op.execute(f'ALTER TABLE "{t}" DISABLE ROW LEVEL SECURITY')


def set_predicate(predicate: str) -> None:
    """Give every table's tenant-isolation policy ``predicate`` (for reading and writing)."""
    if not _is_pg():
        return
    rows = op.get_bind().execute(
        sa.text("SELECT tablename FROM pg_policies WHERE schemaname = current_schema() AND policyname = :p"),
        {"p": POLICY},
    )
    for (t,) in rows.fetchall():
        op.execute(f'ALTER POLICY {POLICY} ON "{t}" USING ({predicate}) WITH CHECK ({predicate})')
