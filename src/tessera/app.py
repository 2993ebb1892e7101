"""The ASGI application factory."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator

from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse, RedirectResponse, Response
from sqlalchemy import text

from tessera import modules
from tessera.core import lifecycle
from tessera.core.crypto.keyring import MasterKeys, init_keyring
from tessera.core.db.session import get_database, init_database, set_database
from tessera.core.http import handlers, solver
from tessera.core.http.deps import document_auth
from tessera.core.http.handlers import ORJSONResponse
from tessera.core.http.idempotency import IdempotencyMiddleware
from tessera.core.http.middleware import BodyLimitMiddleware, RateLimitMiddleware, RequestContextMiddleware
from tessera.core.http.ratelimit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
from tessera.core.http.routing import index_included_routers
from tessera.core.logging import configure_logging
from tessera.core.metrics import render
from tessera.settings import Settings, get_settings

DESCRIPTION = """
Tessera's REST API. Authenticate with an API key (`Authorization: Bearer tsk_…`) or a console
session cookie (writes then need the `X-CSRF-Token` header). Every error has the shape
`{"error": {"code", "message", "field", "request_id"}}`. Every POST accepts an
`Idempotency-Key` header: a replay within 24 hours returns the first response. List endpoints
take `limit`, `cursor` (from `next_cursor`), `sort` (`field` or `-field`) and filters
(`field=value`, `field__in=a,b`, `field__gte=`, `field__lte=`, `field__contains=`).
"""


def init_runtime(settings: Settings) -> None:
    """Open the database and load the master keys (idempotent per process)."""
    settings.ensure_dirs()
    master = settings.master_key.get_secret_value() if settings.master_key else None
    init_keyring(MasterKeys.load(settings.keys_dir, master))
    try:
        get_database()
    except RuntimeError:
        init_database(
            settings.effective_database_url,
            pool_size=settings.db_pool_size,
            read_pool_size=settings.db_read_pool_size,
            echo=settings.db_echo,
        )


async def migrations_at_head() -> bool:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", "tessera:migrations")
    head = ScriptDirectory.from_config(cfg).get_current_head()
    async with get_database().engine.connect() as conn:
        current = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    return bool(current == head)


# Young-generation threshold of the cyclic garbage collector in a serving process. At the
# default (700 allocations) a collection runs every few requests and traverses every object of
# the 64 requests in flight, promoting them to older generations that are traversed again.
GC_THRESHOLD = (50_000, 20, 100)


def tune_gc() -> None:
    """Move everything imported and built at start-up out of the collector's sight
    (``gc.freeze``) and collect young objects less often: with the default settings
    cyclic garbage collection costs a large share of a short request's CPU time."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_level, settings.log_json)
    init_runtime(settings)
    modules.load(modules.REGISTRATIONS)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        for hook in lifecycle.on_startup:
            await hook(app)
        if settings.gc_tuning:
            tune_gc()
        try:
            yield
        finally:
            for hook in reversed(lifecycle.on_shutdown):
                await hook(app)

    app = FastAPI(
        title="Tessera API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's built-in OpenTelemetry asks the global providers (and the environment)
        # whether to trace on every request; Tessera exports Prometheus metrics and logs.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    handlers.install(app)
    # The installation's own routes, in a router like every module's (index_included_routers
    # gives each included router its path test; routes on the app itself are asked in turn).
    health = APIRouter()

    @health.get("/", include_in_schema=False)
    async def root() -> Response:
        """The installation's address opens the console."""
        return RedirectResponse("/console/", status_code=307)

    @health.get("/healthz", tags=["health"], include_in_schema=True)
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @health.get("/readyz", tags=["health"], responses={503: {"description": "Not ready"}})
    async def readyz() -> Response:
        """The database is reachable and migrations are at head."""
        try:
            ok = await migrations_at_head()
        except Exception as exc:  # any database failure means not ready
            return ORJSONResponse({"status": "unavailable", "reason": type(exc).__name__}, status_code=503)
        if not ok:
            return ORJSONResponse(
                {"status": "unavailable", "reason": "migrations not at head"}, status_code=503
            )
        return ORJSONResponse({"status": "ready"})

    @health.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Prometheus metrics."""
        return Response(await render(), media_type="text/plain; version=0.0.4")

    app.include_router(health)
    for mod in modules.load(modules.ROUTERS):
        app.include_router(mod.router)
    for mod in modules.load(modules.VIEWS):
        mount = getattr(mod, "mount", None)
        if mount is not None:
            mount(app)
        elif hasattr(mod, "router"):
            app.include_router(mod.router)

    document_auth(app)
    index_included_routers(app)
    solver.install()

    limiter: RateLimiter = (
        RedisRateLimiter(settings.redis_url)
        if settings.rate_limit_backend == "redis"
        else MemoryRateLimiter()
    )
    # Outermost first: context/log/metrics → body limit → rate limit → idempotency → app.
    app.add_middleware(IdempotencyMiddleware, ttl_hours=settings.idempotency_ttl_hours)
    app.add_middleware(
        RateLimitMiddleware,
        limiter=limiter,
        per_key=settings.rate_limit_per_key,
        per_ip=settings.rate_limit_per_ip,
    )
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, upload_bytes=settings.max_upload_bytes
    )
    app.add_middleware(RequestContextMiddleware)
    return app


def reset_runtime() -> None:
    set_database(None)
