"""The app role's grants: the cluster-wide one survives databases migrated at the same time."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from tessera.core.db.grants import grant_parameter
from tests.core.conftest import pg_only

pytestmark = pg_only


@pytest.fixture
def admin() -> Iterator[Engine]:
    url = os.environ["TESSERA_TEST_PG_ADMIN_URL"].replace("postgresql://", "postgresql+psycopg://")
    eng = create_engine(url, pool_size=8)
    yield eng
    eng.dispose()


@pytest.fixture
def role(admin: Engine) -> Iterator[str]:
    name = f"grant_test_{uuid.uuid4().hex[:8]}"
    with admin.connect() as c:
        c.execute(text(f'CREATE ROLE "{name}"'))
        c.commit()
    yield name
    with admin.connect() as c:
        c.execute(text(f'REVOKE SET ON PARAMETER session_replication_role FROM "{name}"'))
        c.execute(text(f'DROP ROLE "{name}"'))
        c.commit()


def _held(admin: Engine, role: str) -> bool:
    with admin.connect() as c:
        return bool(
            c.execute(
                text("SELECT has_parameter_privilege(:r, 'session_replication_role', 'SET')"), {"r": role}
            ).scalar()
        )


def _grant_at_once(admin: Engine, role: str, parameter: str, sessions: int = 6) -> list[BaseException]:
    """``grant_parameter`` from ``sessions`` connections released together (as the migrations
    of several databases of one cluster); the errors they raised."""
    barrier = threading.Barrier(sessions)
    errors: list[BaseException] = []

    def migrate() -> None:
        with admin.connect() as c:
            c.execute(text("SELECT 1"))
            c.commit()
            barrier.wait()
            try:
                with c.begin():
                    grant_parameter(c, role, parameter)
            except BaseException as exc:  # collected for the caller's assertion
                errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_concurrent_grants_of_the_parameter_all_succeed(admin: Engine, role: str) -> None:
    # A bare GRANT from several sessions at once fails with "tuple concurrently updated" in
    # most of them (what a CI run of two test workers met); each migration must go through.
    assert _grant_at_once(admin, role, "session_replication_role") == []
    assert _held(admin, role)


def test_concurrent_first_grants_of_a_parameter_all_succeed(admin: Engine, role: str) -> None:
    # On a cluster where nobody holds a privilege on the parameter, the first grants create its
    # catalog row at once: all but one fail on pg_parameter_acl's unique index (what a fresh CI
    # cluster met). A parameter no one is granted stands in for session_replication_role.
    parameter = "log_parser_stats"
    with admin.connect() as c:
        c.execute(text(f'REVOKE SET ON PARAMETER {parameter} FROM "{role}"'))
        c.commit()
        fresh = not c.execute(
            text("SELECT count(*) FROM pg_parameter_acl WHERE parname = :p"), {"p": parameter}
        ).scalar()
    try:
        assert _grant_at_once(admin, role, parameter) == [], f"fresh catalog row: {fresh}"
    finally:
        with admin.connect() as c:
            c.execute(text(f'REVOKE SET ON PARAMETER {parameter} FROM "{role}"'))
            c.commit()


def test_a_held_grant_is_not_granted_again(admin: Engine, role: str) -> None:
    def grant_then_row_version() -> Any:
        with admin.connect() as c, c.begin():
            grant_parameter(c, role)
        with admin.connect() as c:
            return c.execute(
                text("SELECT xmin::text FROM pg_parameter_acl WHERE parname = 'session_replication_role'")
            ).scalar()

    xmin = grant_then_row_version()
    assert grant_then_row_version() == xmin  # the catalog row was not rewritten
    assert _held(admin, role)
