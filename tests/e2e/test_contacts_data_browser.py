"""Customer-data pages in Chromium: the import wizard end to end, the segment builder with its
live count, accessibility and the phone viewport."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import TenantWorld
from tests.e2e.conftest import axe_violations, sign_in

pytestmark = pytest.mark.e2e

CSV = (
    "姓名,手机,邮箱,城市\n"
    "张三,13800138070,zs70@example.com,上海\n"
    "李四,12345,ls70@example.com,北京\n"
    "王五,13800138071,ww71@example.com,广州\n"
)


def _watch(page: Any, errors: list[str]) -> None:
    """Script errors and failed requests (a missing resource names its URL here)."""
    page.on("pageerror", lambda e: errors.append(f"script: {e}"))
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource")
            else None
        ),
    )
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)


@pytest.fixture
async def worker(app: Any) -> AsyncIterator[None]:
    """The job worker in-process (embedded workers are off in tests)."""
    from tessera.contacts.tasks import HAVE_JOBS

    if not HAVE_JOBS:
        yield
        return
    from tessera.core.jobs.worker import Worker

    w = Worker(["imports", "default"], cron=False, poll_seconds=0.1)
    task = asyncio.create_task(w.run())
    yield
    w.stop()
    await asyncio.wait_for(task, 30)


async def test_import_wizard_end_to_end(
    live_server: str, context: Any, tenant: TenantWorld, worker: None, tmp_path: Path
) -> None:
    page = await context.new_page()
    errors: list[str] = []
    _watch(page, errors)
    await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
    await page.click("a[data-nav='contacts.imports']")
    await page.wait_for_url(f"{live_server}/console/contacts/imports")
    file = tmp_path / "客户.csv"
    file.write_bytes(CSV.encode("utf-8"))
    await page.set_input_files("#f-file", str(file))
    await page.click("button:has-text('Upload and map columns')")
    await page.wait_for_url(re.compile(r".*/console/contacts/imports/[0-9a-f-]+.*"))
    job_url = page.url.split("?")[0]
    assert await page.locator("#col_0").input_value() == "name"
    assert await page.locator("#col_1").input_value() == "phone"
    assert await page.locator("#col_3").input_value() == "city"
    await page.select_option("#col_3", "source")  # change one mapping
    await page.click("button:has-text('Check every row')")
    await page.wait_for_selector("#dry-run-report")
    bad = page.locator("tr[data-row='3']")
    assert await bad.count() == 1
    assert await bad.locator("[data-rule]").get_attribute("data-rule") == "invalid"
    assert await page.locator("#col_3").input_value() == "source"
    # A mapping changed after the check makes the report stale: start waits for a new check.
    await page.select_option("#col_2", "skip")
    assert await page.locator("[data-start-import]").is_disabled()
    assert await page.locator("[data-stale-hint]").is_visible()
    await page.click("button:has-text('Check every row')")
    await page.wait_for_selector("#dry-run-report")
    assert await page.locator("#col_2").input_value() == "skip"
    assert await page.locator("[data-start-import]").is_enabled()
    await page.click("button:has-text('Start the import')")
    await page.wait_for_selector("#import-progress[data-status='done']", timeout=20000)
    assert await page.locator("[data-testid=import-created]").inner_text() == "2"
    assert await page.locator("[data-testid=import-failed]").inner_text() == "1"
    async with page.expect_download() as dl:
        await page.click("[data-testid=error-file]")
    download = await dl.value
    body = Path(await download.path()).read_bytes().decode("utf-8-sig")
    assert body.splitlines()[0].startswith("row,姓名") and "12345" in body and "13800138070" not in body
    assert job_url.rsplit("/", 1)[1] not in ("", "imports")
    await page.goto(f"{live_server}/console/contacts/imports")
    assert "客户.csv" in await page.locator("#list-contacts-imports").inner_text()
    assert errors == []


async def test_segment_builder_live_count(
    live_server: str, context: Any, tenant: TenantWorld, client: httpx.AsyncClient
) -> None:
    h = tenant.headers("admin")
    for name, city, stage in (
        ("Amy", "Shanghai", "customer"),
        ("Bob", "Shanghai", "lead"),
        ("Cai", "Beijing", "customer"),
    ):
        r = await client.post(
            "/v1/contacts", json={"name": name, "city": city, "lifecycle_stage": stage}, headers=h
        )
        assert r.status_code == 201
    page = await context.new_page()
    errors: list[str] = []
    _watch(page, errors)
    await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
    await page.goto(f"{live_server}/console/contacts/segments")
    await page.click("text=New segment")
    await page.wait_for_selector("#rule-builder .rb-condition")
    count = page.locator("[data-testid=segment-count]")
    await page.wait_for_function("() => document.querySelector('[data-testid=segment-count]')")
    assert await count.inner_text() == "0"  # city is "" by default

    cond = page.locator(".rb-condition").nth(0)
    await cond.locator("input[data-key=value]").fill("Shanghai")
    await page.wait_for_function("() => document.querySelector('[data-count]')?.dataset.count === '2'")
    # A second condition: lifecycle stage is customer.
    await page.click(".rb-add-condition")
    second = page.locator(".rb-condition").nth(1)
    await second.locator("select[data-key=type]").select_option("lifecycle")
    second = page.locator(".rb-condition").nth(1)
    await second.locator("select[data-key=in]").select_option(["customer"])
    await page.wait_for_function("() => document.querySelector('[data-count]')?.dataset.count === '1'")
    # Any instead of all.
    await page.locator(".rb-group select[data-key=op]").first.select_option("or")
    await page.wait_for_function("() => document.querySelector('[data-count]')?.dataset.count === '3'")
    await page.locator(".rb-group select[data-key=op]").first.select_option("and")
    await page.wait_for_function("() => document.querySelector('[data-count]')?.dataset.count === '1'")
    await page.fill("#f-name", "Shanghai customers")
    await page.click("button:has-text('Save segment')")
    await page.wait_for_url(re.compile(r".*/console/contacts/segments/[0-9a-f-]{36}.*"))
    assert await page.locator("h1").inner_text() == "Shanghai customers"
    await page.wait_for_selector("#rule-builder .rb-condition >> nth=1")
    assert await page.locator(".rb-condition").count() == 2
    await page.click("nav.tabs a:has-text('Members')")
    await page.wait_for_load_state()
    rows = await page.locator("#list-contacts-segment_members").inner_text()
    assert "Amy" in rows and "Bob" not in rows and "Cai" not in rows
    assert errors == []


async def _pages(client: httpx.AsyncClient, tenant: TenantWorld) -> list[str]:
    h = tenant.headers("admin")
    r = await client.post(
        "/v1/contacts", json={"name": "Dana", "city": "Hangzhou", "phones": ["13800138080"]}, headers=h
    )
    assert r.status_code == 201
    seg = (
        await client.post(
            "/v1/segments",
            json={
                "name": "HZ",
                "rules": {"type": "attribute", "field": "city", "op": "eq", "value": "Hangzhou"},
            },
            headers=h,
        )
    ).json()
    static = (await client.post("/v1/segments", json={"name": "Picked", "kind": "static"}, headers=h)).json()
    up = await client.post("/v1/imports?filename=a.csv", content=CSV.encode(), headers=h)
    imp = up.json()["id"]
    return [
        "/console/contacts/imports",
        f"/console/contacts/imports/{imp}",
        "/console/contacts/segments",
        "/console/contacts/segments/new",
        f"/console/contacts/segments/{seg['id']}",
        f"/console/contacts/segments/{seg['id']}?tab=members",
        f"/console/contacts/segments/{static['id']}",
        "/console/contacts/quality",
    ]


async def test_accessibility_and_phone_viewport(
    live_server: str, chromium: Any, context: Any, tenant: TenantWorld, client: httpx.AsyncClient
) -> None:
    paths = await _pages(client, tenant)
    page = await context.new_page()
    await sign_in(page, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
    found = {}
    for path in paths:
        await page.goto(live_server + path)
        await page.wait_for_load_state("networkidle")
        v = await axe_violations(page, live_server)
        if v:
            found[path] = v
    # The dry-run report too.
    await page.goto(live_server + paths[1])
    await page.click("button:has-text('Check every row')")
    await page.wait_for_selector("#dry-run-report")
    v = await axe_violations(page, live_server)
    if v:
        found["dry-run"] = v
    assert found == {}, __import__("json").dumps(found, indent=1)

    ctx = await chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        phone = await ctx.new_page()
        await sign_in(phone, live_server, tenant.slug, tenant.emails["admin"], tenant.password)
        wide = {}
        for path in paths:
            await phone.goto(live_server + path)
            await phone.wait_for_load_state("networkidle")
            w = await phone.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
            if w[0] > w[1]:
                wide[path] = w
        assert wide == {}
    finally:
        await ctx.close()
