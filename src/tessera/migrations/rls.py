"""Row-level security helpers used by migrations (PostgreSQL only; no-ops on SQLite)."""

from __future__ import annotations

from alembic import op

POLICY = "tenant_isolation"
PREDICATE = "tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid"


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
