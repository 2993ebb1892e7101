"""Render console screenshots for the README: ``docs/img/console-*.png``.

Builds a throw-away SQLite installation in a temporary directory (migrated to head), creates a
demo workspace through the services (users, departments, a custom role, audit history), serves
the app with uvicorn on a free loopback port and captures pages with Debian's Chromium at desktop
(1280x800) and phone (390x844) sizes. Usage: ``.venv/bin/python scripts/screenshots.py``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img"
PASSWORD = "demo-password-123"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _prepare_env(tmp: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp / 'tessera.db'}"
    os.environ.update(
        TESSERA_DATA_DIR=str(tmp),
        TESSERA_DATABASE_URL=url,
        TESSERA_MIGRATION_DATABASE_URL=url,
        TESSERA_LOG_LEVEL="WARNING",
        TESSERA_EMBEDDED_WORKERS="false",
        TESSERA_ARGON2_TIME_COST="1",
        TESSERA_ARGON2_MEMORY_COST="1024",
    )
    subprocess.run(
        [sys.executable, "-m", "alembic", "-c", str(ROOT / "alembic.ini"), "upgrade", "head"],
        check=True,
        cwd=ROOT,
        capture_output=True,
    )


async def seed() -> dict[str, Any]:
    from tessera.core import context
    from tessera.core.db.session import unit_of_work
    from tessera.core.identity import auth, service
    from tessera.core.identity.auth import build_principal
    from tessera.core.identity.repository import RoleRepository
    from tessera.core.identity.schemas import (
        ApiKeyCreate,
        DepartmentCreate,
        RoleCreate,
        TeamCreate,
        UserCreate,
    )
    from tessera.core.tenancy import service as tenancy
    from tessera.core.tenancy.schemas import TenantCreate

    people = [
        ("Li Wei", "manager"),
        ("Zhang Min", "member"),
        ("Chen Jing", "member"),
        ("Wang Fang", "read-only"),
        ("Liu Yang", "member"),
        ("Sarah Miller", "admin"),
        ("Tom Baker", "member"),
    ]
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            await tenancy.create_tenant(
                s,
                TenantCreate(
                    name="Acme Trading",
                    slug="acme",
                    timezone="Asia/Shanghai",
                    currency="CNY",
                    owner_email="owner@acme.example.com",
                    owner_name="Olivia Owner",
                    owner_password=PASSWORD,
                ),
            )
            roles = {r.key: r.id for r in await RoleRepository(s).all_roles()}
            sales = await service.create_department(s, DepartmentCreate(name="Sales"))
            await service.create_department(s, DepartmentCreate(name="Sales East", parent_id=sales.id))
            support = await service.create_department(s, DepartmentCreate(name="Support"))
            await service.create_team(s, TeamCreate(name="Key accounts", department_id=sales.id))
            await service.create_role(
                s, RoleCreate(key="auditor", name="Auditor", permissions=["audit:read", "users:read"])
            )
            for i, (name, role) in enumerate(people):
                u = await service.create_user(
                    s,
                    UserCreate(
                        email=f"{name.split()[0].lower()}@acme.example.com",
                        name=name,
                        role_id=roles[role],
                        department_id=sales.id if i % 2 == 0 else support.id,
                        password=PASSWORD if i < 5 else None,
                        phone="13800138000",
                    ),
                )
                if role == "admin":
                    await auth.create_api_key(s, ApiKeyCreate(name="ERP sync"), await build_principal(s, u))
            member_id = u.id
    return {"member": member_id}


async def capture() -> None:
    import uvicorn
    from playwright.async_api import async_playwright

    from tessera.app import create_app

    app = create_app()  # opens the database and loads the keys
    ids = await seed()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    pages = [
        ("home", "/console/"),
        ("users", "/console/admin/users"),
        ("user", f"/console/admin/users/{ids['member']}"),
        ("roles", "/console/admin/roles"),
        ("audit", "/console/admin/audit"),
        ("departments", "/console/admin/departments"),
        ("settings", "/console/admin/settings"),
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            for label, viewport in (
                ("", {"width": 1280, "height": 800}),
                ("-phone", {"width": 390, "height": 844}),
            ):
                ctx = await browser.new_context(viewport=viewport, device_scale_factor=1)
                page = await ctx.new_page()
                await page.goto(f"{base}/console/login")
                await page.screenshot(path=str(OUT / f"console-login{label}.png"))
                await page.fill("#f-workspace", "acme")
                await page.fill("#f-email", "owner@acme.example.com")
                await page.fill("#f-password", PASSWORD)
                await page.click("button[type=submit]")
                await page.wait_for_load_state()
                for name, path in pages:
                    await page.goto(base + path)
                    await page.wait_for_timeout(300)  # let Chart.js finish its first draw
                    await page.screenshot(path=str(OUT / f"console-{name}{label}.png"))
                await ctx.close()
            await browser.close()
    finally:
        server.should_exit = True
        await task
    print("\n".join(sorted(str(p.relative_to(ROOT)) for p in OUT.glob("console-*.png"))))


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="tessera-shots-") as tmp:
        _prepare_env(Path(tmp))
        sys.path.insert(0, str(ROOT / "src"))
        asyncio.run(capture())


if __name__ == "__main__":
    main()
