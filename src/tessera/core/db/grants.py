"""What the migrations grant the application's role on PostgreSQL (``TESSERA_DB_APP_ROLE``).

The application connects as a role that does not own the tables, so row-level security binds
it. After each upgrade it gets the data privileges on every table and sequence, minus updates
and deletes on the append-only audit log and any write to ``alembic_version``.

One grant is cluster-wide: ``SET`` on the parameter ``session_replication_role`` (PostgreSQL
15+, granted only when the migrating role is a superuser), which lets the contact import check
its foreign keys once per chunk. PostgreSQL refuses concurrent changes of that one catalog row
("tuple concurrently updated"), which two databases of one cluster migrated at the same time
(test workers, several tenants' installations) would otherwise hit: it is granted only when
missing, and a collision is retried once the other grant has committed.
"""

from __future__ import annotations

import time

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

PARAMETER = "session_replication_role"
ATTEMPTS = 20


def grant_app_role(connection: Connection, role: str) -> None:
    """Grant ``role`` what the application needs, inside the migration's transaction."""
    if connection.dialect.name != "postgresql" or not role:
        return
    q = f'"{role}"'
    connection.exec_driver_sql(f"GRANT USAGE ON SCHEMA public TO {q}")
    connection.exec_driver_sql(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {q}")
    connection.exec_driver_sql(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {q}")
    # The audit log is append-only for the application.
    connection.exec_driver_sql(f"REVOKE UPDATE, DELETE ON audit_log FROM {q}")
    connection.exec_driver_sql(f"REVOKE UPDATE, DELETE, INSERT ON alembic_version FROM {q}")
    # The contact import checks its foreign keys once per chunk instead of per row
    # (ContactRepository.insert_contacts_with_identities); only a superuser may grant this.
    if connection.exec_driver_sql(
        "SELECT current_setting('server_version_num')::int >= 150000"
        " AND (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
    ).scalar():
        grant_parameter(connection, role)


def grant_parameter(connection: Connection, role: str, parameter: str = PARAMETER) -> None:
    """``GRANT SET ON PARAMETER <parameter>`` unless ``role`` holds it already; a collision
    with another session's grant is retried (each check sees what has committed). Two kinds:
    the parameter's catalog row changed by another grant ("tuple concurrently updated"), and,
    on a cluster where nobody held a privilege on it yet, that row created by another grant
    (a unique violation on ``pg_parameter_acl``: what a fresh CI cluster met)."""
    for attempt in range(ATTEMPTS):
        held = connection.exec_driver_sql(
            "SELECT has_parameter_privilege(%(role)s, %(p)s, 'SET')", {"role": role, "p": parameter}
        ).scalar()
        if held:
            return
        try:
            with connection.begin_nested():
                connection.exec_driver_sql(f'GRANT SET ON PARAMETER {parameter} TO "{role}"')
            return
        except DBAPIError as exc:
            message = str(exc.orig)
            collided = "tuple concurrently updated" in message or "pg_parameter_acl" in message
            if not collided or attempt == ATTEMPTS - 1:
                raise
        time.sleep(0.02 * (attempt + 1))
