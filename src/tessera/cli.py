"""The ``tessera`` command."""

from __future__ import annotations

import asyncio
import base64
import secrets
import sys
from collections.abc import Awaitable
from typing import Any, TypeVar

import typer

from tessera import modules
from tessera.settings import Settings, get_settings

app = typer.Typer(help="Tessera: multi-tenant intelligent CRM platform.", no_args_is_help=True)
tenant_app = typer.Typer(help="Manage tenants (platform operator).", no_args_is_help=True)
user_app = typer.Typer(help="Manage users of a tenant.", no_args_is_help=True)
apikey_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
keys_app = typer.Typer(help="Encryption keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Audit log.", no_args_is_help=True)
operator_app = typer.Typer(help="Platform operators.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(user_app, name="user")
app.add_typer(apikey_app, name="apikey")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(operator_app, name="operator")

for _name, _mod in (("backup", "tessera.core.backup.cli"),):
    _m = modules.optional_import(_mod)
    if _m is not None and hasattr(_m, "app"):
        app.add_typer(_m.app, name=_name)

T = TypeVar("T")
DEMO_ROLES = ("owner", "admin", "manager", "member", "read-only")


def _run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def run_service(coro: Awaitable[T]) -> T:
    """Run a long-lived service coroutine (the gateway) on the event loop ``serve`` uses:
    uvloop when installed (uvicorn[standard] installs it; it does not exist on Windows), else
    asyncio's. Benchmarks start the gateway through this too, so they measure what runs."""
    if _importable("uvloop"):
        import uvloop

        return uvloop.run(coro)  # type: ignore[arg-type]
    return asyncio.run(coro)  # type: ignore[arg-type]


def _runtime() -> Settings:
    from tessera.app import init_runtime

    s = get_settings()
    init_runtime(s)
    return s


def run_migrations(settings: Settings | None = None) -> None:
    from alembic import command
    from alembic.config import Config

    settings = settings or get_settings()
    settings.ensure_dirs()
    cfg = Config()
    cfg.set_main_option("script_location", "tessera:migrations")
    cfg.set_main_option("sqlalchemy.url", settings.effective_migration_url)
    command.upgrade(cfg, "head")


@app.command()
def migrate() -> None:
    """Upgrade the database schema to the latest revision."""
    run_migrations()
    typer.echo("database is at the latest revision")


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Bind address (default from settings)."),
    port: int | None = typer.Option(None, help="Port (default from settings)."),
    workers: int = typer.Option(1, help="Server processes (production)."),
) -> None:
    """Start the API and console (and, in embedded mode, the job workers)."""
    import uvicorn

    s = get_settings()
    problems = s.check_production()
    if problems:
        for p in problems:
            typer.echo(f"configuration error: {p}", err=True)
        raise typer.Exit(2)
    uvicorn.run(
        "tessera.app:create_app",
        factory=True,
        host=host or s.host,
        port=port or s.port,
        workers=workers,
        access_log=False,
        log_level="warning",
        proxy_headers=True,
        server_header=False,  # no "server: uvicorn" on every response: it tells clients nothing they need
        # The C event loop and HTTP parser (uvicorn[standard] installs both; uvloop does not
        # exist on Windows, where asyncio's loop is used). With httptools, uvicorn's protocol
        # sending each response in one write (tessera.core.http.server).
        loop="uvloop" if _importable("uvloop") else "auto",
        http="tessera.core.http.server:HttpProtocol" if _importable("httptools") else "auto",
    )


def _importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


@app.command()
def worker(
    queues: str = typer.Option("default", help="Comma-separated queues."),
    concurrency: int = typer.Option(4, help="Jobs run at once."),
) -> None:
    """Run background job workers (production mode)."""
    jobs = modules.optional_import("tessera.core.jobs.worker")
    if jobs is None:
        typer.echo("the job queue is not installed", err=True)
        raise typer.Exit(1)
    _runtime()
    modules.load(modules.REGISTRATIONS)
    jobs.run_worker([q.strip() for q in queues.split(",") if q.strip()], concurrency)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def smsc(ctx: typer.Context) -> None:
    """Run the bundled SMSC simulator (options: see `tessera smsc --help-smsc`)."""
    server = modules.optional_import("tessera.connect.smpp.server")
    if server is None:
        typer.echo("the SMSC simulator is not installed", err=True)
        raise typer.Exit(1)
    args = ["--help" if a == "--help-smsc" else a for a in ctx.args]
    raise typer.Exit(server.main(args) or 0)


@app.command()
def gateway() -> None:
    """Run the messaging gateway: dispatcher and carrier links (production mode)."""
    gw = modules.optional_import("tessera.connect.gateway")
    if gw is None:
        typer.echo("the messaging gateway is not installed", err=True)
        raise typer.Exit(1)
    _runtime()
    modules.load(modules.REGISTRATIONS)
    run_service(gw.run_gateway())  # a coroutine: without the event loop the command did nothing


async def _create_tenant(
    name: str,
    slug: str,
    owner_email: str | None,
    owner_password: str | None,
    timezone: str,
    locale: str,
    currency: str,
) -> Any:
    from tessera.core.db.session import unit_of_work
    from tessera.core.tenancy import service
    from tessera.core.tenancy.schemas import TenantCreate

    async with unit_of_work(platform=True) as s:
        tenant, owner = await service.create_tenant(
            s,
            TenantCreate(
                name=name,
                slug=slug,
                owner_email=owner_email,
                owner_password=owner_password,
                timezone=timezone,
                locale=locale,
                currency=currency,
            ),
        )
        return tenant.id, tenant.slug, owner.email if owner else None


@tenant_app.command("create")
def tenant_create(
    name: str,
    slug: str,
    owner_email: str = typer.Option(None),
    owner_password: str = typer.Option(None),
    timezone: str = typer.Option("UTC"),
    locale: str = typer.Option("en"),
    currency: str = typer.Option("USD"),
) -> None:
    """Create a tenant (with built-in roles and keys) and optionally its owner."""
    _runtime()
    tid, slug, owner = _run(
        _create_tenant(name, slug, owner_email, owner_password, timezone, locale, currency)
    )
    typer.echo(f"tenant {slug} created: {tid}" + (f" (owner {owner})" if owner else ""))


@tenant_app.command("list")
def tenant_list() -> None:
    """List tenants."""
    _runtime()
    from tessera.core.db.session import unit_of_work
    from tessera.core.tenancy import service

    async def go() -> list[Any]:
        async with unit_of_work(platform=True) as s:
            return [(t.id, t.slug, t.name, t.status) for t in await service.list_tenants(s)]

    for tid, slug, name, status in _run(go()):
        typer.echo(f"{tid}  {slug:<24} {status:<10} {name}")


def _set_status(slug: str, status: str) -> None:
    _runtime()
    from tessera.core.db.session import unit_of_work
    from tessera.core.tenancy import service

    async def go() -> None:
        async with unit_of_work(platform=True) as s:
            t = await service.get_by_slug(s, slug)
            if t is None:
                raise typer.BadParameter(f"no tenant '{slug}'")
            await service.set_status(s, t.id, status)

    _run(go())
    typer.echo(f"tenant {slug} is now {status}")


@tenant_app.command("suspend")
def tenant_suspend(slug: str) -> None:
    """Suspend a tenant: its users and keys get 403 until resumed."""
    _set_status(slug, "suspended")


@tenant_app.command("resume")
def tenant_resume(slug: str) -> None:
    """Resume a suspended tenant."""
    _set_status(slug, "active")


async def _in_tenant(slug: str, fn: Any) -> Any:
    from tessera.core.db.session import switch_tenant, unit_of_work
    from tessera.core.tenancy import service

    async with unit_of_work(platform=True) as s:
        t = await service.get_by_slug(s, slug)
        if t is None:
            raise typer.BadParameter(f"no tenant '{slug}'")
        await switch_tenant(s, t.id)
        return await fn(s, t)


@user_app.command("create")
def user_create(
    tenant: str,
    email: str,
    name: str = typer.Option(None),
    role: str = typer.Option("member"),
    password: str = typer.Option(None, help="Omit to invite by email."),
) -> None:
    """Create a user in a tenant with a built-in or custom role."""
    _runtime()
    from tessera.core.identity import service
    from tessera.core.identity.repository import RoleRepository
    from tessera.core.identity.schemas import UserCreate

    async def go(s: Any, t: Any) -> Any:
        r = await RoleRepository(s).by_key(role)
        if r is None:
            raise typer.BadParameter(f"no role '{role}'")
        u = await service.create_user(
            s,
            UserCreate(email=email, name=name or email.split("@")[0], role_id=r.id, password=password),
            region=t.default_region,
        )
        return u.id

    typer.echo(f"user created: {_run(_in_tenant(tenant, go))}")


@apikey_app.command("create")
def apikey_create(
    tenant: str,
    name: str,
    scopes: str = typer.Option("*", help="Comma-separated permissions."),
) -> None:
    """Create an API key for a tenant; the key is printed once."""
    _runtime()
    from tessera.core.identity import auth
    from tessera.core.identity.schemas import ApiKeyCreate

    async def go(s: Any, t: Any) -> str:
        _k, raw = await auth.create_api_key(
            s, ApiKeyCreate(name=name, scopes=[x.strip() for x in scopes.split(",") if x.strip()]), None
        )
        return raw

    typer.echo(_run(_in_tenant(tenant, go)))


async def ensure_operator(email: str, name: str, password: str | None) -> str | None:
    """Create the operator ``email`` (or set its console password); a new one gets an API key,
    returned once (None when the operator already existed)."""
    from sqlalchemy import select

    from tessera.core.db.session import unit_of_work
    from tessera.core.identity.passwords import hash_password, sha256_hex
    from tessera.core.tenancy.models import Operator, OperatorKey

    email = email.strip().lower()
    async with unit_of_work(platform=True) as s:
        op = (await s.execute(select(Operator).where(Operator.email == email))).scalar_one_or_none()
        if op is not None:
            if password:
                op.password_hash = hash_password(password)
            return None
        op = Operator(
            email=email, name=name, password_hash=hash_password(password or secrets.token_urlsafe(24))
        )
        s.add(op)
        await s.flush()
        kid, secret = secrets.token_hex(4), secrets.token_hex(24)
        s.add(
            OperatorKey(
                operator_id=str(op.id), name=email, prefix=f"top_{kid}", secret_hash=sha256_hex(secret)
            )
        )
        return f"top_{kid}_{secret}"


@operator_app.command("create")
def operator_create(
    email: str,
    name: str = typer.Option("Operator"),
    password: str | None = typer.Option(
        None,
        envvar="TESSERA_OPERATOR_PASSWORD",
        help="Password for the operator console (/console/operator); without it the operator "
        "uses the API key only.",
    ),
) -> None:
    """Create a platform operator and print an operator API key (shown once)."""
    _runtime()
    key = _run(ensure_operator(email, name, password))
    if key is None:
        typer.echo(f"operator {email} exists" + ("; console password updated" if password else ""))
        return
    typer.echo(key)


@keys_app.command("rotate")
def keys_rotate(
    new_master: bool = typer.Option(False, help="Also generate a new master key and re-wrap tenant keys."),
    batch_size: int = typer.Option(500),
) -> None:
    """Add a new data-key version per tenant and re-encrypt personal data in batches."""
    s = get_settings()
    if new_master:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        from tessera.core.crypto.keyring import key_id

        if s.master_key:
            typer.echo("the master key comes from TESSERA_MASTER_KEY; rotate it there", err=True)
            raise typer.Exit(2)
        path = s.keys_dir / "master.key"
        old = base64.b64decode(path.read_text().strip())
        (s.keys_dir / f"master-{key_id(old)}.key").write_text(base64.b64encode(old).decode())
        path.write_text(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode())
    _runtime()
    rotation = modules.optional_import("tessera.core.crypto.rotation")
    if rotation is None:
        typer.echo("key rotation is not available", err=True)
        raise typer.Exit(1)
    report = _run(rotation.rotate_data_keys(batch_size=batch_size, rewrap_master=new_master))
    typer.echo(str(report))


@audit_app.command("verify")
def audit_verify(tenant: str = typer.Argument(None, help="Tenant slug; default: every tenant.")) -> None:
    """Recompute each tenant's audit hash chain; exit 1 if any row was tampered with."""
    _runtime()
    from tessera.core.audit import service as audit
    from tessera.core.db.session import switch_tenant, unit_of_work
    from tessera.core.tenancy import service

    async def go() -> bool:
        ok = True
        async with unit_of_work(platform=True) as s:
            tenants = await service.list_tenants(s)
        for t in tenants:
            if tenant and t.slug != tenant:
                continue
            async with unit_of_work(platform=True) as s:
                await switch_tenant(s, t.id)
                r = await audit.verify(s)
            typer.echo(
                f"{t.slug}: {'ok' if r.ok else 'TAMPERED'} ({r.checked} rows"
                + (f", first bad seq {r.first_bad_seq}: {r.reason})" if not r.ok else ")")
            )
            ok = ok and r.ok
        return ok

    if not _run(go()):
        raise typer.Exit(1)


# --- demo ------------------------------------------------------------------------------------


DEMO_OPERATOR = "operator@demo.tessera.dev"


async def ensure_demo_tenant(settings: Settings) -> list[tuple[str, str]]:
    """Create the demo tenant with one user per built-in role; return (role, email) pairs."""
    from tessera.core.db.session import switch_tenant, unit_of_work
    from tessera.core.identity import service as identity
    from tessera.core.identity.repository import RoleRepository, UserRepository
    from tessera.core.identity.schemas import UserCreate
    from tessera.core.tenancy import service

    logins = [(r, f"{r.replace('-', '')}@demo.tessera.dev") for r in DEMO_ROLES]
    async with unit_of_work(platform=True) as s:
        tenant = await service.get_by_slug(s, "demo")
        if tenant is None:
            from tessera.core.tenancy.schemas import TenantCreate

            tenant, _ = await service.create_tenant(
                s,
                TenantCreate(
                    name="Demo Trading Co.",
                    slug="demo",
                    timezone="Asia/Shanghai",
                    locale="en",
                    currency="CNY",
                ),
            )
        else:
            await switch_tenant(s, tenant.id)
        roles = {r.key: r.id for r in await RoleRepository(s).all_roles()}
        users = UserRepository(s)
        for role, email in logins:
            if await users.by_email(email) is None:
                await identity.create_user(
                    s,
                    UserCreate(
                        email=email,
                        name=f"Demo {role.title()}",
                        role_id=roles[role],
                        password=settings.demo_password,
                        phone="+8613800138000",
                    ),
                    region="CN",
                )
    return logins


@app.command()
def demo(
    port: int | None = typer.Option(None, help="Port (default 8000)."),
    no_serve: bool = typer.Option(False, "--no-serve", help="Set up and print logins, do not start."),
    mail_sink_port: int | None = typer.Option(
        None, help="Port of the demo SMTP sink (default 2525, or a free one when taken)."
    ),
) -> None:
    """Set up the data directory, migrate, create the demo tenant, print logins and start."""
    import os

    s = get_settings()
    s.ensure_dirs()
    run_migrations(s)
    _runtime()
    modules.load(modules.REGISTRATIONS)
    logins = _run(ensure_demo_tenant(s))
    connect_demo = modules.optional_import("tessera.connect.demo")
    if connect_demo is not None:
        # The email channel set up below points at this port; the sink starts on it after.
        os.environ["TESSERA_MAIL_SINK_PORT"] = str(connect_demo.choose_mail_sink_port(mail_sink_port))
    for demo_module in modules.load(modules.DEMO_SETUP):
        _run(demo_module.setup(s))
    sink = _run(connect_demo.start_mail_sink(s)) if connect_demo is not None and not no_serve else None
    url = s.public_url or f"http://{s.host}:{port or s.port}"
    typer.echo("")
    typer.echo("Tessera is ready.")
    typer.echo(f"  Console:  {url}/console/")
    typer.echo(f"  API docs: {url}/docs")
    typer.echo("  Workspace: demo")
    for role, email in logins:
        typer.echo(f"  {role:<10} {email:<32} password: {s.demo_password}")
    _run(ensure_operator(DEMO_OPERATOR, "Demo Operator", s.demo_password))
    typer.echo(f"  Operator console: {url}/console/operator")
    typer.echo(f"  {'operator':<10} {DEMO_OPERATOR:<32} password: {s.demo_password}")
    typer.echo(f"  Data directory: {s.data_dir.resolve()}")
    if sink is not None:
        typer.echo(f"  Mail sink: smtp://127.0.0.1:{sink.port}  (console: {url}/console/connect/email/sink)")
    typer.echo("")
    sys.stdout.flush()
    try:
        if not no_serve:
            serve(host=None, port=port, workers=1)
    finally:
        if sink is not None:
            sink.stop()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
