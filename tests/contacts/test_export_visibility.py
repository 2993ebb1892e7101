"""An export run by the job worker applies the requester's record visibility, not the
worker's (the worker has no principal of its own)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import httpx

from tessera.contacts.service import imports
from tessera.core import context
from tessera.core.access.principal import Principal
from tessera.core.db.session import unit_of_work
from tests.conftest import TenantWorld
from tests.contacts.conftest import make_contact, run_jobs


async def test_worker_export_keeps_the_requesters_visibility(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    h = tenant.headers("admin")
    await make_contact(client, h, name="Mine", city="Vis", owner_id=str(tenant.users["member"]))
    await make_contact(client, h, name="Not mine", city="Vis", owner_id=str(tenant.users["admin"]))
    member = Principal(
        tenant_id=tenant.tenant_id,
        actor=context.Actor("user", tenant.users["member"]),
        role_key="member",
        permissions=frozenset({"contacts:read", "contacts:import"}),
        visibility={"default": "own"},
        user_id=tenant.users["member"],
    )
    with context.tenant_scope(tenant.tenant_id, principal=member):
        async with unit_of_work() as s:
            job = await imports.start_export(s, {"city": "Vis"}, None)
            job_id = job.id
    await run_jobs()
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            done = await imports.get_job(s, job_id)
            assert done.status == "done", done.error
            assert done.result_path
            path = Path(done.result_path)
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    assert [r[1] for r in rows[1:]] == ["Mine"]
