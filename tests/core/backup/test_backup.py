from __future__ import annotations

import datetime as dt
import io
import json
import uuid
import zipfile
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from tessera.core import context
from tessera.core.backup import service
from tessera.core.backup.models import TenantDeletion
from tessera.core.db.session import unit_of_work
from tessera.core.identity.models import User
from tessera.settings import Settings
from tests.conftest import BACKEND, TenantWorld, make_tenant
from tests.helpers import assert_cross_tenant_refused

D1 = dt.datetime(2026, 3, 1, 3, 0, tzinfo=dt.UTC)
D2 = dt.datetime(2026, 3, 2, 3, 0, tzinfo=dt.UTC)


@pytest.fixture
def bsettings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.model_copy(update={"data_dir": tmp_path})


@pytest.fixture
def target(tmp_path: Path, bsettings: Settings):  # type: ignore[no-untyped-def]
    if BACKEND != "postgres":
        yield str(tmp_path / "restored.db")
        return
    name = f"tessera_restore_{uuid.uuid4().hex[:10]}"
    yield name
    owner = service.make_url(service._sync_url(bsettings.effective_migration_url)).set(database="postgres")
    eng = create_engine(owner, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


async def test_restore_older_backup_with_identical_counts(
    app: object, bsettings: Settings, target: str
) -> None:
    await make_tenant()
    first = service.create_backup(bsettings, at=D1)
    await make_tenant()
    service.create_backup(bsettings, at=D2)
    listed = service.list_backups(bsettings)
    assert [b["created_at"] for b in listed] == [D1.isoformat(), D2.isoformat()]
    assert listed[0]["tables"]["tenants"] == 1 and listed[1]["tables"]["tenants"] == 2
    assert listed[0]["sha256"] and listed[0]["size"] == first.stat().st_size
    assert b"tenants" not in first.read_bytes()  # compressed and encrypted

    report = service.restore_backup(bsettings, D1.date(), target)
    assert report.ok, report.problems
    assert report.backup == listed[0]["name"]
    assert report.restored_rows == listed[0]["tables"]
    assert report.restored_rows["tenants"] == 1 and report.restored_rows["users"] == 5
    assert sum(report.audit.values()) >= 6  # tenant.create + 5 user.create, chain verified


async def test_tampering_is_detected(app: object, bsettings: Settings, target: str, tmp_path: Path) -> None:
    await make_tenant()
    path = service.create_backup(bsettings, at=D1)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(service.ChecksumMismatch):
        service.restore_backup(bsettings, D1.date(), target)
    # a manifest that lies about the row counts is caught after the restore
    path.unlink()
    path = service.create_backup(bsettings, at=D1)
    mpath = Path(str(path) + ".manifest.json")
    m = json.loads(mpath.read_text())
    m["tables"]["users"] += 1
    mpath.write_text(json.dumps(m))
    other = target + "_2" if BACKEND == "postgres" else str(tmp_path / "restored2.db")
    try:
        report = service.restore_backup(bsettings, D1.date(), other)
        assert not report.ok and any(p.startswith("users:") for p in report.problems)
    finally:
        if BACKEND == "postgres":
            owner = service.make_url(service._sync_url(bsettings.effective_migration_url)).set(
                database="postgres"
            )
            eng = create_engine(owner, isolation_level="AUTOCOMMIT")
            with eng.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)'))
            eng.dispose()
    with pytest.raises(service.BackupNotFound):
        service.restore_backup(bsettings, dt.date(2020, 1, 1), target)


async def test_retention_keeps_daily_and_weekly(app: object, bsettings: Settings) -> None:
    days = [dt.datetime(2026, 3, d, 3, tzinfo=dt.UTC) for d in (1, 2, 9, 16, 20, 21, 22)]
    for d in days:
        service.create_backup(bsettings, at=d)
    service.create_backup(bsettings, at=days[-1] + dt.timedelta(hours=1))
    deleted = service.prune_backups(bsettings, keep_daily=3, keep_weekly=3)
    kept = [b["created_at"][:13] for b in service.list_backups(bsettings)]
    # newest per day for the last 3 days (20, 21, 22 at 04h), newest of the last 3 ISO weeks
    # (week of 16-22 already kept, 9, 2)
    assert kept == ["2026-03-02T03", "2026-03-09T03", "2026-03-20T03", "2026-03-21T03", "2026-03-22T04"]
    assert len(deleted) == 3


async def test_export_contains_only_own_rows(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    r = await client.post("/v1/exports", headers=tenant.headers("admin"))
    assert r.status_code == 202, r.text
    export_id = r.json()["id"]
    if r.json()["status"] == "pending":  # queued as a job: run its handler here
        from tessera.core.backup.tasks import tenant_export

        with context.tenant_scope(tenant.tenant_id):
            async with unit_of_work() as s:
                await tenant_export({"export_id": export_id}, SimpleNamespace(session=s))
    r = await client.get(f"/v1/exports/{export_id}", headers=tenant.headers("admin"))
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    assert r.json()["row_counts"]["users"] == 5
    r = await client.get(f"/v1/exports/{export_id}/download", headers=tenant.headers("admin"))
    assert r.status_code == 200, r.text
    zf = zipfile.ZipFile(io.BytesIO(r.content))
    names = zf.namelist()
    assert "users.jsonl" in names and "audit_log.jsonl" in names and "tenant_keys.jsonl" not in names
    seen_tenants: set[str] = set()
    for n in names:
        if n.endswith(".jsonl"):
            for line in zf.read(n).splitlines():
                row = json.loads(line)
                seen_tenants.add(row.get("tenant_id") or row["id"])
    assert seen_tenants == {str(tenant.tenant_id)}
    users = [json.loads(line) for line in zf.read("users.jsonl").splitlines()]
    assert {u["email"] for u in users} == set(tenant.emails.values())  # decrypted
    assert users[0]["phone"] == "+8613800138000"
    assert all("password_hash" not in u for u in users)
    r = await client.post("/v1/exports", headers=tenant.headers("member"))
    assert r.status_code == 403
    await assert_cross_tenant_refused(client, "GET", f"/v1/exports/{export_id}", other_tenant)
    await assert_cross_tenant_refused(client, "GET", f"/v1/exports/{export_id}/download", other_tenant)


async def test_tenant_deletion_after_grace(
    client: httpx.AsyncClient,
    tenant: TenantWorld,
    other_tenant: TenantWorld,
    operator_headers: dict[str, str],
) -> None:
    path = f"/v1/operator/tenants/{tenant.tenant_id}/deletion"
    r = await client.post(path, headers=operator_headers, json={"grace_days": 30, "reason": "contract ended"})
    assert r.status_code == 201, r.text
    r = await client.post(path, headers=operator_headers, json={"grace_days": 30})
    assert r.status_code == 409
    r = await client.get("/v1/me", headers=tenant.headers("admin"))
    assert r.status_code == 403 and r.json()["error"]["code"] == "tenant.suspended"
    r = await client.post(path, headers=operator_headers, json={"grace_days": -1})
    assert r.status_code == 422 and r.json()["error"]["field"] == "grace_days"

    async with unit_of_work(platform=True) as s:  # nothing is due yet
        assert await service.run_due_deletions(s) == []
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=31)
    async with unit_of_work(platform=True) as s:
        assert await service.run_due_deletions(s, now=later) == [tenant.tenant_id]
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            assert (await s.execute(select(User))).first() is None
    with context.tenant_scope(other_tenant.tenant_id):
        async with unit_of_work() as s:
            assert len((await s.execute(select(User))).all()) == 5
    async with unit_of_work(platform=True) as s:
        d = (await s.execute(select(TenantDeletion))).scalar_one()
    assert d.status == "done" and d.tenant_slug == tenant.slug and d.row_counts["users"] == 5
    r = await client.get("/v1/operator/tenant-deletions", headers=operator_headers)
    assert r.json()[0]["status"] == "done"
    r = await client.get(f"/v1/operator/tenants/{tenant.tenant_id}", headers=operator_headers)
    assert r.status_code == 404


async def test_cancel_deletion(
    client: httpx.AsyncClient, tenant: TenantWorld, operator_headers: dict[str, str]
) -> None:
    path = f"/v1/operator/tenants/{tenant.tenant_id}/deletion"
    assert (await client.delete(path, headers=operator_headers)).status_code == 404
    assert (await client.post(path, headers=operator_headers, json={})).status_code == 201
    r = await client.delete(path, headers=operator_headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    r = await client.get("/v1/me", headers=tenant.headers("admin"))
    assert r.status_code == 200
    r = await client.post(f"/v1/operator/tenants/{uuid.uuid4()}/deletion", headers=operator_headers, json={})
    assert r.status_code == 404


async def test_cli_create_list_restore(
    app: object, bsettings: Settings, target: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from tessera.core.backup import cli

    await make_tenant()
    monkeypatch.setattr(cli, "get_settings", lambda: bsettings)
    runner = CliRunner()
    r = runner.invoke(cli.app, ["create"])
    assert r.exit_code == 0, r.output
    assert Path(r.output.strip()).exists()
    r = runner.invoke(cli.app, ["list"])
    assert r.exit_code == 0 and BACKEND.replace("postgres", "postgresql") in r.output
    r = runner.invoke(cli.app, ["restore", "--at", "yesterday", "--target", target])
    assert r.exit_code != 0
    today = dt.datetime.now(dt.UTC).date().isoformat()
    r = runner.invoke(cli.app, ["restore", "--at", today, "--target", target])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert out["ok"] is True and out["problems"] == []
