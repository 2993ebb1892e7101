from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from tessera.core.db.session import unit_of_work
from tessera.core.monitoring import service
from tessera.core.monitoring.notifiers import IncidentEvent, WebhookNotifier

VALUE = {"v": 0.0}


async def _probe(session: Any, window: int) -> float:
    return VALUE["v"]


service.register_metric("test.probe", _probe)


class Collect:
    def __init__(self) -> None:
        self.events: list[IncidentEvent] = []

    async def notify(self, event: IncidentEvent) -> None:
        self.events.append(event)


async def test_incident_opens_and_resolves(
    client: httpx.AsyncClient, operator_headers: dict[str, str]
) -> None:
    r = await client.post(
        "/v1/operator/alert-rules",
        headers=operator_headers,
        json={
            "name": "probe high",
            "metric": "test.probe",
            "condition": ">",
            "threshold": 5,
            "window_minutes": 1,
            "severity": "critical",
        },
    )
    assert r.status_code == 201, r.text
    rule_id = r.json()["id"]
    sink = Collect()

    async def round_() -> list[IncidentEvent]:
        async with unit_of_work(platform=True) as s:
            return await service.evaluate(s, notifiers=lambda rule: [sink])

    VALUE["v"] = 1
    assert await round_() == []
    VALUE["v"] = 10
    opened = await round_()
    assert [e.kind for e in opened] == ["opened"] and opened[0].value == 10
    VALUE["v"] = 12
    assert await round_() == []  # still open: no second incident
    r = await client.get("/v1/operator/incidents?status=open", headers=operator_headers)
    assert len(r.json()) == 1 and r.json()[0]["last_value"] == 12 and r.json()[0]["rule_id"] == rule_id
    VALUE["v"] = 2
    resolved = await round_()
    assert [e.kind for e in resolved] == ["resolved"]
    assert [e.kind for e in sink.events] == ["opened", "resolved"]  # sent after commit
    r = await client.get("/v1/operator/incidents", headers=operator_headers)
    inc = r.json()[0]
    assert inc["status"] == "resolved" and inc["resolved_at"] and inc["value"] == 10
    # a "<" rule through the API's evaluate-now endpoint
    r = await client.patch(
        f"/v1/operator/alert-rules/{rule_id}",
        headers=operator_headers,
        json={"condition": "<", "threshold": 3},
    )
    assert r.status_code == 200
    r = await client.post("/v1/operator/monitoring/evaluate", headers=operator_headers)
    assert r.status_code == 200 and r.json()[0]["kind"] == "opened"
    VALUE["v"] = 0


async def test_rules_api_validation(client: httpx.AsyncClient, operator_headers: dict[str, str]) -> None:
    r = await client.post(
        "/v1/operator/alert-rules",
        headers=operator_headers,
        json={"name": "x", "metric": "nope", "condition": ">", "threshold": 1},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "metric"
    r = await client.post(
        "/v1/operator/alert-rules",
        headers=operator_headers,
        json={"name": "x", "metric": "jobs.dead", "condition": ">=", "threshold": 1},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "condition"
    r = await client.get(f"/v1/operator/alert-rules/{uuid.uuid4()}", headers=operator_headers)
    assert r.status_code == 404 and r.json()["error"]["code"] == "monitoring.rule_not_found"
    r = await client.post(
        "/v1/operator/alert-rules",
        headers=operator_headers,
        json={"name": "5xx", "metric": "http.5xx_rate", "condition": ">", "threshold": 0.05},
    )
    rid = r.json()["id"]
    assert (
        await client.delete(f"/v1/operator/alert-rules/{rid}", headers=operator_headers)
    ).status_code == 204
    assert (await client.get(f"/v1/operator/alert-rules/{rid}", headers=operator_headers)).status_code == 404
    r = await client.get("/v1/operator/monitoring/metrics", headers=operator_headers)
    assert r.status_code == 200 and 0 <= r.json()["http.5xx_rate"] <= 1
    r = await client.get("/v1/operator/alert-rules")
    assert r.status_code == 401


async def test_webhook_notifier_posts_json() -> None:
    seen: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(204)

    import datetime as dt

    ev = IncidentEvent("opened", "i", "r", "rule", "jobs.dead", ">", 1, 3, "warning", dt.datetime.now(dt.UTC))
    await WebhookNotifier("https://ops.example.com/hook", transport=httpx.MockTransport(handle)).notify(ev)
    assert seen[0]["type"] == "incident.opened" and seen[0]["incident"]["value"] == 3
    failing = WebhookNotifier(
        "https://ops.example.com/hook", transport=httpx.MockTransport(lambda r: httpx.Response(500))
    )
    await failing.notify(ev)  # logged, not raised


async def test_failed_webhook_deliveries_metric(app: object, operator_headers: dict[str, str]) -> None:
    from tessera.core import context
    from tessera.core.webhooks.models import WebhookDelivery, WebhookEndpoint
    from tests.conftest import make_tenant

    for failures in (2, 1):
        world = await make_tenant()
        with context.tenant_scope(world.tenant_id):
            async with unit_of_work() as s:
                ep = WebhookEndpoint(url="https://hooks.example.com/x", secret="s3cret-value")
                s.add(ep)
                await s.flush()
                for seq in range(failures + 1):
                    s.add(
                        WebhookDelivery(
                            endpoint_id=ep.id,
                            seq=seq,
                            event_id=f"e{seq}",
                            event_type="t",
                            body="{}",
                            status="failed" if seq < failures else "succeeded",
                        )
                    )
    async with unit_of_work(platform=True) as s:
        assert await service.webhooks_failed_deliveries(s, 5) == 3
        values = await service.current_values(s, 5)
    assert values["webhooks.failed_deliveries"] == 3
    assert values["jobs.queue_depth"] == 0 and values["jobs.dead"] == 0


async def test_job_metrics(app: object) -> None:
    import datetime as dt

    from sqlalchemy import update

    from tessera.core.jobs.models import Job
    from tessera.core.jobs.service import enqueue

    async with unit_of_work(platform=True) as s:
        await enqueue(s, "monitoring.evaluate", {})
        await enqueue(s, "monitoring.evaluate", {}, run_at=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
        dead = await enqueue(s, "monitoring.evaluate", {})
    async with unit_of_work(platform=True) as s:
        await s.execute(
            update(Job).where(Job.id == dead).values(status="dead", finished_at=dt.datetime.now(dt.UTC))
        )
    async with unit_of_work(platform=True) as s:
        assert await service.jobs_queue_depth(s, 5) == 1  # the future one is not due
        assert await service.jobs_dead(s, 5) == 1
