"""Console pages of customer data, part B: import wizard, segment builder, data quality."""

from __future__ import annotations

import csv
import io
import json
import re
import uuid

import httpx

from tests.conftest import TenantWorld
from tests.console.conftest import Browser
from tests.contacts.conftest import make_contact, run_jobs

BAD_CSV = (
    "姓名,手机,邮箱,城市,备注\n"
    "张三,13800138020,zs@example.com,上海,a\n"
    "李四,12345,ls@example.com,北京,b\n"  # wrong phone
    ",13800138023,x@example.com,成都,c\n"  # no name
    "孙七,13800138024,sq@example.com,南京,d\n"
)


async def _upload(browser: Browser, name: str, raw: bytes) -> httpx.Response:
    return await browser.client.post(
        "/console/contacts/imports",
        data={"csrf_token": browser.csrf},
        files={"file": (name, raw, "text/csv")},
    )


def _job_url(r: httpx.Response) -> str:
    assert r.status_code == 303, r.text
    return r.headers["location"].split("?")[0]


async def test_import_wizard_gbk_file_with_bad_rows(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.get("/console/contacts/imports")
    assert r.status_code == 200 and "Past imports" in r.text
    r = await _upload(browser, "客户.csv", BAD_CSV.encode("gbk"))
    url = _job_url(r)
    r = await browser.get(url)
    assert r.status_code == 200
    # Chinese headers mapped automatically; the file was read as GBK.
    assert "gbk" in r.text
    selected = dict(
        re.findall(
            r'<label class="form-label" for="(col_\d)">[^<]*</label>\s*<select[^>]*>.*?<option value="([^"]+)" selected',
            r.text,
            re.S,
        )
    )
    assert selected == {"col_0": "name", "col_1": "phone", "col_2": "email", "col_3": "city", "col_4": "skip"}

    # A mapping without a name column is refused on the form, nothing changes.
    r = await browser.post(
        f"{url}/check", {"col_0": "skip", "col_1": "phone", "col_2": "email", "col_3": "city"}
    )
    assert r.status_code == 422 and "a column must be mapped to name" in r.text
    # Change one mapping (城市 → source) and run the dry run.
    r = await browser.post(
        f"{url}/check",
        {"col_0": "name", "col_1": "phone", "col_2": "email", "col_3": "source", "col_4": "skip"},
    )
    assert r.status_code == 200, r.text
    rows = re.findall(r'<tr data-row="(\d+)">.*?data-rule="([a-z_]+)"', r.text, re.S)
    assert ("3", "invalid") in rows and ("4", "required") in rows and len(rows) == 2
    assert "Start the import" in r.text

    r = await browser.post(f"{url}/start")
    assert r.status_code == 303
    r = await browser.get(f"{url}/progress", headers={"HX-Request": "true"})
    assert 'hx-trigger="every 1s"' in r.text and 'data-status="queued"' in r.text
    await run_jobs()
    r = await browser.get(f"{url}/progress", headers={"HX-Request": "true"})
    assert 'data-status="done"' in r.text and "every 1s" not in r.text
    assert re.search(r'data-testid="import-created">2<', r.text)
    assert re.search(r'data-testid="import-failed">2<', r.text)
    r = await browser.get(f"{url}/errors")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [x[0] for x in lines[1:]] == ["3", "4"]
    # The mapping change took effect: 城市 went to source.
    r = await browser.client.get(
        "/v1/contacts/lookup",
        params={"kind": "phone", "value": "13800138020"},
        headers=tenant.headers("admin"),
    )
    assert r.json()["source"] == "上海" and r.json()["city"] is None
    # The list of past imports shows the outcome.
    r = await browser.get("/console/contacts/imports?status=done")
    assert "客户.csv" in r.text
    r = await browser.get("/console/contacts/imports?status=cancelled")
    assert "客户.csv" not in r.text
    r = await browser.get(
        "/console/contacts/imports?filename__contains=客户",
        headers={"HX-Request": "true", "HX-Target": "list-contacts-imports"},
    )
    assert r.status_code == 200 and "<html" not in r.text and "客户.csv" in r.text


async def test_import_upload_refusals_and_cancel(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await _upload(browser, "notes.pdf", b"%PDF-1.4")
    assert r.status_code == 422 and "must be a CSV or XLSX" in r.text
    r = await _upload(browser, "empty.csv", b"")
    assert r.status_code == 422 and "no header row" in r.text
    url = _job_url(await _upload(browser, "a.csv", b"Name,Phone\nAlice,13800138030\n"))
    r = await browser.post(f"{url}/cancel")
    assert r.status_code == 303
    r = await browser.get(url)
    assert 'data-status="cancelled"' in r.text and "Check every row" not in r.text
    r = await browser.post(f"{url}/start")
    assert r.status_code == 409


async def test_import_pages_need_the_import_permission(
    browser: Browser, tenant: TenantWorld, other_tenant: TenantWorld, browser2: Browser
) -> None:
    await browser.login(tenant, "admin")
    url = _job_url(await _upload(browser, "a.csv", b"Name\nAlice\n"))
    await browser2.login(tenant, "member")
    assert (await browser2.get("/console/contacts/imports")).status_code == 403
    assert (await browser2.get(url)).status_code == 403
    other = Browser(browser2.client)
    browser2.client.cookies.clear()
    await other.login(other_tenant, "owner")
    for path in (url, f"{url}/progress", f"{url}/errors"):
        assert (await other.get(path)).status_code == 404, path
    r = await other.post(f"{url}/cancel")
    assert r.status_code == 404
    r = await browser.get(url)
    assert "Check every row" in r.text  # untouched by the refused cancel


async def test_quality_dashboard_and_recompute(
    browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    h = tenant.headers("admin")
    await make_contact(client, h, name="Q", phones=["13800138050"], city="A")
    await make_contact(client, h, name="Q", phones=["13900138050"])
    await browser.login(tenant, "read-only")
    r = await browser.get("/console/contacts/quality")
    assert r.status_code == 200
    assert re.search(
        r'<div class="tile-label">Contacts</div>\s*<div class="tile-value"><a [^>]*>2</a>', r.text
    )
    assert 'data-chart="chart-quality-completeness"' in r.text and "<script>" not in r.text
    assert "Recompute now" not in r.text  # read-only users cannot recompute
    assert (await browser.post("/console/contacts/quality/recompute")).status_code == 403

    await make_contact(client, h, name="R", emails=["r@example.com"], city="B")
    await browser.login(tenant, "admin")
    r = await browser.get("/console/contacts/quality")
    # The snapshot does not move until it is recomputed.
    assert re.search(r'tile-value"><a [^>]*>2</a>', r.text)
    r = await browser.post("/console/contacts/quality/recompute")
    assert r.status_code == 303
    r = await browser.get("/console/contacts/quality")
    assert re.search(r'tile-value"><a [^>]*>3</a>', r.text)
    assert re.search(r"<td[^>]*>City</td><td[^>]*>66.7%</td>", r.text)
    assert re.search(r"<td[^>]*>Email</td><td[^>]*>33.3%</td>", r.text)


async def _segment_world(client: httpx.AsyncClient, tenant: TenantWorld) -> dict[str, str]:
    h = tenant.headers("admin")
    vip = (await client.post("/v1/tags", json={"name": "VIP"}, headers=h)).json()["id"]
    a = await make_contact(
        client,
        h,
        name="Amy",
        city="Shanghai",
        lifecycle_stage="customer",
        tag_ids=[vip],
        phones=["13800138060"],
    )
    b = await make_contact(client, h, name="Bob", city="Shanghai", lifecycle_stage="lead")
    c = await make_contact(client, h, name="Cai", city="Beijing", lifecycle_stage="customer")
    return {"vip": vip, "a": a["id"], "b": b["id"], "c": c["id"]}


async def test_segment_builder_live_count_save_refresh_members(
    browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    w = await _segment_world(client, tenant)
    await browser.login(tenant, "admin")
    r = await browser.get("/console/contacts/segments/new")
    assert r.status_code == 200 and 'id="builder-meta"' in r.text and "contacts-segments.js" in r.text
    meta = json.loads(
        re.search(r'<script type="application/json" id="builder-meta">(.*?)</script>', r.text, re.S).group(1)
    )
    assert meta["tags"] == [{"id": w["vip"], "name": "VIP"}] and meta["labels"]["ops"]["between"] == "between"

    city = {"type": "attribute", "field": "city", "op": "eq", "value": "Shanghai"}
    stage = {"type": "lifecycle", "in": ["customer"]}

    async def live(rules: object) -> httpx.Response:
        return await browser.post(
            "/console/contacts/segments/preview", {"rules": json.dumps(rules)}, headers={"HX-Request": "true"}
        )

    r = await live({"op": "and", "rules": [city]})
    assert re.search(r'data-count="2"', r.text), r.text
    r = await live({"op": "and", "rules": [city, stage]})
    assert re.search(r'data-count="1"', r.text)
    r = await live({"op": "or", "rules": [city, stage]})
    assert re.search(r'data-count="3"', r.text)
    r = await live({"op": "and", "rules": [{"type": "tag", "match": "none", "tag_ids": [w["vip"]]}]})
    assert re.search(r'data-count="2"', r.text)
    r = await live({"op": "and", "rules": [{"type": "attribute", "field": "nope", "op": "eq", "value": 1}]})
    assert 'data-error-path="rules.rules[0].field"' in r.text and "unknown field" in r.text
    r = await live("not json")
    assert 'data-error-path="rules"' in r.text

    # Save refuses bad input with the field named, and creates nothing.
    r = await browser.post(
        "/console/contacts/segments/new", {"name": "", "kind": "dynamic", "rules": json.dumps(city)}
    )
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    r = await browser.post(
        "/console/contacts/segments/new",
        {
            "name": "Bad",
            "kind": "dynamic",
            "rules": json.dumps({"type": "event", "name": "x", "count_op": "about"}),
        },
    )
    assert r.status_code == 422 and "rules.count_op" in r.text
    r = await browser.get("/console/contacts/segments")
    assert "Bad" not in r.text
    r = await browser.post(
        "/console/contacts/segments/new",
        {
            "name": "SH customers",
            "kind": "dynamic",
            "rules": json.dumps({"op": "and", "rules": [city, stage]}),
        },
    )
    seg_url = _job_url(r)
    r = await browser.get(seg_url + "?tab=members")
    assert r.status_code == 200 and "Amy" in r.text and "Bob" not in r.text
    # Edit the rules: OR instead of AND, saving refreshes the membership.
    r = await browser.post(
        seg_url, {"name": "SH or customers", "rules": json.dumps({"op": "or", "rules": [city, stage]})}
    )
    assert r.status_code == 303
    r = await browser.get(seg_url + "?tab=members")
    assert all(n in r.text for n in ("Amy", "Bob", "Cai")) and "SH or customers" in r.text
    # Refresh on demand after a change of the data.
    await client.patch(f"/v1/contacts/{w['b']}", json={"city": "Suzhou"}, headers=tenant.headers("admin"))
    r = await browser.post(seg_url + "/refresh")
    assert r.status_code == 303 and "2+members" in r.headers["location"].replace("%20", "+")
    r = await browser.get(seg_url + "?tab=members")
    assert "Bob" not in r.text and "Amy" in r.text
    r = await browser.get("/console/contacts/segments?kind=dynamic")
    assert "SH or customers" in r.text


async def test_static_list_add_and_remove(
    browser: Browser, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    w = await _segment_world(client, tenant)
    await browser.login(tenant, "admin")
    r = await browser.post("/console/contacts/segments/new", {"name": "Hand picked", "kind": "static"})
    url = _job_url(r)
    r = await browser.get(url)
    assert r.status_code == 200 and "Add contacts to this list" in r.text
    r = await browser.get(url + "/candidates?q=a", headers={"HX-Request": "true"})
    assert "Amy" in r.text and "Cai" in r.text and "Bob" not in r.text
    r = await browser.post(url + "/members", {"ids": [w["a"], w["c"]]})
    assert r.status_code == 303
    r = await browser.get(url)
    assert "Amy" in r.text and "Cai" in r.text
    r = await browser.get(url + "/candidates?q=a", headers={"HX-Request": "true"})
    assert "Amy" not in r.text
    r = await browser.post(url + "/members/remove", {"ids": [w["c"]]})
    assert r.status_code == 303
    r = await browser.get(url)
    assert "Amy" in r.text and "Cai" not in r.text


async def test_segment_export_csv_and_xlsx_with_expiring_link(
    browser: Browser, browser2: Browser, client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    import datetime as dt

    import openpyxl

    from tessera.contacts.service import console_data
    from tessera.core import context

    world = await _segment_world(client, tenant)
    await browser.login(tenant, "admin")
    seg = (
        await client.post(
            "/v1/segments",
            json={
                "name": "SH",
                "rules": {"type": "attribute", "field": "city", "op": "eq", "value": "Shanghai"},
            },
            headers=tenant.headers("admin"),
        )
    ).json()
    r = await browser.post(f"/console/contacts/segments/{seg['id']}/export", {"format": "pdf"})
    assert r.status_code == 422
    r = await browser.post(f"/console/contacts/segments/{seg['id']}/export", {"format": "xlsx"})
    export_url = _job_url(r)
    r = await browser.get(export_url)
    assert r.status_code == 200 and 'hx-trigger="every 1s"' in r.text and "export-link" not in r.text
    await run_jobs()
    r = await browser.get(export_url)
    link = re.search(r'href="([^"]+/file\?token=[^"]+)"', r.text).group(1)
    r = await browser.get(link)
    assert r.status_code == 200 and "spreadsheetml" in r.headers["content-type"]
    ws = openpyxl.load_workbook(io.BytesIO(r.content)).active
    rows = [tuple(row) for row in ws.iter_rows(values_only=True)]
    assert rows[0][:3] == ("id", "name", "phone") and {x[1] for x in rows[1:]} == {"Amy", "Bob"}
    assert "+8613800138060" in {x[2] for x in rows[1:]}  # an admin sees phones
    # The link is bound to its user, cannot be forged and expires.
    await browser2.login(tenant, "manager")
    assert (await browser2.get(link)).status_code == 404
    assert (await browser.get(link[:-2] + "00")).status_code == 404
    job_id = uuid.UUID(export_url.rsplit("/", 1)[1])
    with context.tenant_scope(tenant.tenant_id):
        old = console_data.sign_download(
            job_id, tenant.users["admin"], now=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        )
    r = await browser.get(f"{export_url}/file?token={old}")
    assert r.status_code == 403 and "expired" in r.text
    # A masked user's CSV export has masked phones, and only the contacts that user may see
    # (the manager's record visibility: Amy is theirs, Bob is not).
    r = await client.patch(
        f"/v1/contacts/{world['a']}",
        json={"owner_id": str(tenant.users["manager"])},
        headers=tenant.headers("admin"),
    )
    assert r.status_code == 200, r.text
    r = await browser2.post(f"/console/contacts/segments/{seg['id']}/export", {"format": "csv"})
    url2 = _job_url(r)
    await run_jobs()
    r = await browser2.get(url2)
    link2 = re.search(r'href="([^"]+/file\?token=[^"]+)"', r.text).group(1)
    r = await browser2.get(link2)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [(x[1], x[2]) for x in lines[1:]] == [("Amy", "138****8060")]


async def test_segment_pages_permissions_and_cross_tenant(
    browser: Browser,
    browser2: Browser,
    client: httpx.AsyncClient,
    tenant: TenantWorld,
    other_tenant: TenantWorld,
) -> None:
    await _segment_world(client, tenant)
    seg = (
        await client.post(
            "/v1/segments",
            json={"name": "Mine", "rules": {"type": "lifecycle", "in": ["customer"]}},
            headers=tenant.headers("admin"),
        )
    ).json()
    await browser.login(tenant, "read-only")
    assert (await browser.get("/console/contacts/segments")).status_code == 200
    assert (await browser.get(f"/console/contacts/segments/{seg['id']}")).status_code == 200
    assert (await browser.get("/console/contacts/segments/new")).status_code == 403
    r = await browser.post(f"/console/contacts/segments/{seg['id']}", {"name": "Hacked", "rules": "{}"})
    assert r.status_code == 403
    assert (
        await browser.post(f"/console/contacts/segments/{seg['id']}/export", {"format": "csv"})
    ).status_code == 403
    r = await browser.post(
        "/console/contacts/segments/preview", {"rules": json.dumps({"type": "lifecycle", "in": ["customer"]})}
    )
    assert 'data-count="2"' in r.text

    await browser2.login(other_tenant, "owner")
    sid = seg["id"]
    for path in (
        f"/console/contacts/segments/{sid}",
        f"/console/contacts/segments/{sid}?tab=members",
        f"/console/contacts/segments/{sid}/candidates?q=a",
    ):
        assert (await browser2.get(path)).status_code == 404, path
    for path in (
        f"/console/contacts/segments/{sid}",
        f"/console/contacts/segments/{sid}/refresh",
        f"/console/contacts/segments/{sid}/delete",
        f"/console/contacts/segments/{sid}/export",
    ):
        assert (
            await browser2.post(path, {"name": "X", "rules": "{}", "format": "csv"})
        ).status_code == 404, path
    # The other tenant's live count sees none of this tenant's contacts.
    r = await browser2.post(
        "/console/contacts/segments/preview", {"rules": json.dumps({"type": "lifecycle", "in": ["customer"]})}
    )
    assert 'data-count="0"' in r.text
    r = await client.get(f"/v1/segments/{sid}", headers=tenant.headers("admin"))
    assert r.json()["name"] == "Mine"
    # The owner deletes it from the console.
    await browser.login(tenant, "member")
    assert (await browser.post(f"/console/contacts/segments/{sid}/delete")).status_code == 303
    assert (await browser.get(f"/console/contacts/segments/{sid}")).status_code == 404


async def test_cancel_stops_a_running_import_cleanly(browser: Browser, tenant: TenantWorld) -> None:
    from sqlalchemy import func, select

    from tessera.contacts.models import Contact, DataJob
    from tessera.contacts.service.imports import run_import
    from tessera.core import context
    from tessera.core.db.base import utcnow
    from tessera.core.db.session import unit_of_work

    await browser.login(tenant, "admin")
    url = _job_url(await _upload(browser, "run.csv", b"Name,Phone\nAlice,13800138090\nBob,13800138091\n"))
    job_id = uuid.UUID(url.rsplit("/", 1)[1])
    assert (await browser.post(f"{url}/check", {"col_0": "name", "col_1": "phone"})).status_code == 200
    assert (await browser.post(f"{url}/start")).status_code == 303
    # A worker has picked it up: the page polls and offers the cancel button.
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            job = (await s.execute(select(DataJob).where(DataJob.id == job_id))).scalar_one()
            job.status, job.started_at = "running", utcnow()
    r = await browser.get(f"{url}/progress", headers={"HX-Request": "true"})
    assert 'data-status="running"' in r.text and "Cancel import" in r.text and "every 1s" in r.text
    assert (await browser.post(f"{url}/cancel")).status_code == 303
    await run_import(tenant.tenant_id, job_id)  # the worker's next batch sees the request and stops
    r = await browser.get(f"{url}/progress", headers={"HX-Request": "true"})
    assert 'data-status="cancelled"' in r.text and "every 1s" not in r.text
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            assert (await s.execute(select(func.count()).select_from(Contact))).scalar_one() == 0
    r = await browser.post(f"{url}/cancel")
    assert r.status_code == 409 and "already cancelled" in r.text


async def test_exports_and_quality_are_tenant_scoped(
    browser: Browser,
    browser2: Browser,
    client: httpx.AsyncClient,
    tenant: TenantWorld,
    other_tenant: TenantWorld,
) -> None:
    await _segment_world(client, tenant)
    seg = (
        await client.post(
            "/v1/segments", json={"name": "L", "kind": "static"}, headers=tenant.headers("admin")
        )
    ).json()
    await browser.login(tenant, "admin")
    export_url = _job_url(
        await browser.post(f"/console/contacts/segments/{seg['id']}/export", {"format": "csv"})
    )
    await run_jobs()
    r = await browser.get(export_url)
    link = re.search(r'href="([^"]+/file\?token=[^"]+)"', r.text).group(1)
    await browser2.login(other_tenant, "owner")
    assert (await browser2.get(export_url)).status_code == 404
    assert (await browser2.get(link)).status_code == 404
    r = await browser2.get("/console/contacts/quality")
    assert r.status_code == 200 and "No contacts yet" in r.text
    # An import page is not an export page and the reverse.
    r = await browser.get(export_url.replace("/segments/exports/", "/imports/"))
    assert r.status_code == 404


async def test_pages_speak_chinese(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/locale", {"locale": "zh_Hans", "next": "/console/contacts/imports"})
    assert r.status_code == 303
    r = await browser.get("/console/contacts/imports")
    assert "从文件导入联系人" in r.text and "历史导入" in r.text
    url = _job_url(await _upload(browser, "c.csv", "姓名,手机\n张三,13800138095\n".encode("gbk")))
    r = await browser.get(url)
    assert "映射文件的列" in r.text and "校验每一行" in r.text
    r = await browser.get("/console/contacts/segments/new")
    assert '"all": "满足全部条件"' in r.text and "保存分群" in r.text
    r = await browser.get("/console/contacts/quality")
    assert "数据质量" in r.text and "立即重新计算" in r.text
