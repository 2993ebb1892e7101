"""Test harness: one migrated database per xdist worker, truncated between tests.

``TESSERA_TEST_DB=sqlite`` (default) or ``postgres``. On PostgreSQL the schema is migrated by
the owning superuser and the application connects as the non-owner role ``tessera_app``, so
row-level security is in force exactly as in production. Set ``TESSERA_TEST_PG_ADMIN_URL``
(``scripts/services.sh start`` prints it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tessera.core import context
from tessera.settings import Settings, reset_settings_cache

ROOT = Path(__file__).resolve().parents[1]
BACKEND = os.environ.get("TESSERA_TEST_DB", "sqlite")


def _worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


def _migrate(url: str, env_extra: dict[str, str]) -> None:
    env = {**os.environ, "TESSERA_MIGRATION_DATABASE_URL": url, **env_extra}
    r = subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if r.returncode:  # alembic's own words, not only its exit status
        raise RuntimeError(f"alembic upgrade head failed ({r.returncode}):\n{r.stderr[-4000:]}")


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    if BACKEND == "postgres":
        admin = os.environ.get("TESSERA_TEST_PG_ADMIN_URL")
        if not admin:
            pytest.exit("TESSERA_TEST_DB=postgres needs TESSERA_TEST_PG_ADMIN_URL", 2)
        name = f"tessera_test_{_worker()}_{os.getpid()}"
        eng = create_engine(
            admin.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
        )
        with eng.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
        base = admin.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
        owner_url = f"{base}/{name}"
        host = base.split("@", 1)[1]
        app_url = f"postgresql+psycopg://tessera_app:tessera_app@{host}/{name}"
        _migrate(owner_url, {"TESSERA_DB_APP_ROLE": "tessera_app"})
        yield {"app": app_url, "owner": owner_url, "backend": "postgres"}
        eng.dispose()
        with eng.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        eng.dispose()
    else:
        path = tmp_path_factory.mktemp("db") / "tessera.db"
        url = f"sqlite+aiosqlite:///{path}"
        _migrate(url, {})
        yield {"app": url, "owner": url, "backend": "sqlite"}


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(database_urls: dict[str, str], data_dir: Path) -> Settings:
    os.environ.update(
        TESSERA_DATA_DIR=str(data_dir),
        TESSERA_DATABASE_URL=database_urls["app"],
        TESSERA_MIGRATION_DATABASE_URL=database_urls["owner"],
        TESSERA_ARGON2_TIME_COST="1",
        TESSERA_ARGON2_MEMORY_COST="1024",
        TESSERA_ARGON2_PARALLELISM="1",
        TESSERA_LOG_LEVEL="WARNING",
        TESSERA_WEBHOOK_ALLOW_PRIVATE="true",
        TESSERA_EMBEDDED_WORKERS="false",
        TESSERA_DB_POOL_SIZE="10",
        TESSERA_DB_READ_POOL_SIZE="10",
    )
    reset_settings_cache()
    from tessera.core.identity.passwords import reset_hasher

    reset_hasher()
    return Settings()


@pytest.fixture(scope="session")
def app(settings: Settings) -> Any:
    from tessera.app import create_app

    return create_app(settings)


def _truncate_sql(backend: str) -> list[str]:
    from tessera.core.db.base import Base
    from tessera.migrations.models import load_all

    load_all()
    tables = [t.name for t in Base.metadata.sorted_tables]
    if backend == "postgres":
        return ["TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"]
    return [f'DELETE FROM "{t}"' for t in reversed(tables)]


@pytest.fixture(autouse=True)
async def clean_db(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    if "app" not in request.fixturenames and "db" not in request.fixturenames:
        yield
        return
    yield
    urls = request.getfixturevalue("database_urls")
    from sqlalchemy.ext.asyncio import create_async_engine

    eng = create_async_engine(urls["owner"])
    async with eng.begin() as conn:
        for stmt in _truncate_sql(urls["backend"]):
            await conn.execute(text(stmt))
    await eng.dispose()
    from tessera.core.crypto.keyring import get_keyring
    from tessera.core.http.deps import forget_tenant_status
    from tessera.core.identity.auth import clear_principal_cache

    get_keyring().forget()
    forget_tenant_status()
    clear_principal_cache()
    context.bind(None, context.SYSTEM)


@pytest.fixture
def db(app: Any) -> Any:
    from tessera.core.db.session import get_database

    return get_database()


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


# --- factories -------------------------------------------------------------------------------


class TenantWorld:
    """A tenant with one user and one API key per built-in role (``keys['admin']`` …)."""

    def __init__(self, tenant_id: uuid.UUID, slug: str) -> None:
        self.tenant_id = tenant_id
        self.slug = slug
        self.users: dict[str, uuid.UUID] = {}
        self.emails: dict[str, str] = {}
        self.keys: dict[str, str] = {}
        self.roles: dict[str, uuid.UUID] = {}
        self.password = "correct-horse-battery"

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}


async def make_tenant(
    slug: str | None = None, *, roles: tuple[str, ...] = ("owner", "admin", "manager", "member", "read-only")
) -> TenantWorld:
    from tessera.core.access.principal import Principal
    from tessera.core.db.session import unit_of_work
    from tessera.core.identity import auth, service
    from tessera.core.identity.auth import build_principal
    from tessera.core.identity.repository import RoleRepository
    from tessera.core.identity.schemas import ApiKeyCreate, UserCreate
    from tessera.core.tenancy import service as tenancy
    from tessera.core.tenancy.schemas import TenantCreate

    slug = slug or f"t-{uuid.uuid4().hex[:8]}"
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            tenant, _ = await tenancy.create_tenant(
                s, TenantCreate(name=slug.title(), slug=slug, timezone="Asia/Shanghai")
            )
            world = TenantWorld(tenant.id, slug)
            for r in await RoleRepository(s).all_roles():
                world.roles[r.key] = r.id
            for role in roles:
                email = f"{role.replace('-', '')}@{slug}.example.com"
                user = await service.create_user(
                    s,
                    UserCreate(
                        email=email,
                        name=f"{role.title()} User",
                        role_id=world.roles[role],
                        password=world.password,
                        phone="13800138000",
                    ),
                )
                world.users[role] = user.id
                world.emails[role] = email
                principal: Principal = await build_principal(s, user)
                _key, raw = await auth.create_api_key(s, ApiKeyCreate(name=f"{role} key"), principal)
                world.keys[role] = raw
    return world


@pytest.fixture
async def tenant(app: Any) -> TenantWorld:
    return await make_tenant()


@pytest.fixture
async def other_tenant(app: Any) -> TenantWorld:
    return await make_tenant()


# --- console sessions, for any test directory -------------------------------------------------


@pytest.fixture
async def browser(app: Any) -> AsyncIterator[Any]:
    """An httpx client signed in through the console's form (see ``tests.console.conftest``)."""
    from tests.console.conftest import Browser

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield Browser(c)


@pytest.fixture
async def browser2(app: Any) -> AsyncIterator[Any]:
    from tests.console.conftest import Browser

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield Browser(c)
