from __future__ import annotations

from typing import Any

import httpx


async def make_contact(client: httpx.AsyncClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    body.setdefault("name", "Zhang San")
    r = await client.post("/v1/contacts", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def run_jobs() -> None:
    from tessera.contacts.tasks import HAVE_JOBS, wait_background

    if HAVE_JOBS:
        from tessera.core.jobs.worker import Worker

        await Worker(["imports", "default"], cron=False, poll_seconds=0.05).run(stop_when_idle=True)
    await wait_background()
