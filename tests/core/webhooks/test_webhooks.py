from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from tessera.core import context
from tessera.core.audit.models import AuditEvent
from tessera.core.db.session import unit_of_work
from tessera.core.events import service as events
from tessera.core.identity import mail
from tessera.core.webhooks import service, signing, ssrf
from tessera.core.webhooks.models import WebhookDelivery, WebhookEndpoint
from tests.conftest import TenantWorld
from tests.core.jobs.support import run_worker_until_idle
from tests.core.webhooks.receiver import Receiver
from tests.helpers import api_snapshot, assert_cross_tenant_refused

H = "admin"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


async def _endpoint(
    client: httpx.AsyncClient, world: TenantWorld, url: str, events_: list[str] | None = None
) -> dict[str, Any]:
    r = await client.post(
        "/v1/webhook-endpoints",
        headers=world.headers(H),
        json={"url": url, "event_types": events_ or ["contact.created"]},
    )
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def _publish(world: TenantWorld, event: str, data: dict[str, Any], n: int = 1) -> None:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            for i in range(n):
                await events.publish(s, event, {**data, "i": i})


def reference_verify(secret: str, header: str, body: bytes, tolerance: int = 300) -> bool:
    """What a receiver writes from the documentation, independently of tessera's code."""
    fields = dict(part.split("=", 1) for part in header.split(","))
    ts = int(fields["t"])
    if abs(time.time() - ts) > tolerance:
        return False
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(mac, fields["v1"])


async def test_endpoint_crud_secret_shown_once_and_audited(
    client: httpx.AsyncClient, tenant: TenantWorld
) -> None:
    ep = await _endpoint(client, tenant, "https://hooks.example.com/x")
    assert ep["secret"].startswith("whsec_") and ep["active"] is True
    r = await client.get(f"/v1/webhook-endpoints/{ep['id']}", headers=tenant.headers(H))
    assert r.status_code == 200 and "secret" not in r.json()
    r = await client.get("/v1/webhook-endpoints", headers=tenant.headers(H))
    assert [e["id"] for e in r.json()["items"]] == [ep["id"]]
    r = await client.patch(
        f"/v1/webhook-endpoints/{ep['id']}",
        headers=tenant.headers(H),
        json={"event_types": ["*"], "description": "all"},
    )
    assert r.status_code == 200 and r.json()["event_types"] == ["*"]
    r = await client.post(f"/v1/webhook-endpoints/{ep['id']}/rotate-secret", headers=tenant.headers(H))
    assert r.status_code == 200 and r.json()["secret"] != ep["secret"]
    r = await client.delete(f"/v1/webhook-endpoints/{ep['id']}", headers=tenant.headers(H))
    assert r.status_code == 204
    r = await client.get(f"/v1/webhook-endpoints/{ep['id']}", headers=tenant.headers(H))
    assert r.status_code == 404
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            actions = (await s.execute(select(AuditEvent.action).order_by(AuditEvent.seq))).scalars().all()
    assert [a for a in actions if a.startswith("webhook")] == [
        "webhook_endpoint.create",
        "webhook_endpoint.update",
        "webhook_endpoint.rotate_secret",
        "webhook_endpoint.delete",
    ]
    r = await client.get("/v1/webhook-endpoints", headers=tenant.headers("member"))
    assert r.status_code == 403


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://example.com/x", "event_types": ["a.b"]}, "url"),
        ({"url": "https://user:pw@example.com/x", "event_types": ["a.b"]}, "url"),
        ({"url": "https://example.com/x", "event_types": ["Not An Event"]}, "event_types.0"),
        ({"url": "https://example.com/x", "event_types": []}, "event_types"),
    ],
)
async def test_invalid_endpoints_are_422_naming_the_field(
    client: httpx.AsyncClient, tenant: TenantWorld, body: dict[str, Any], field: str
) -> None:
    r = await client.post("/v1/webhook-endpoints", headers=tenant.headers(H), json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["field"] == field, r.text


async def test_cross_tenant_access_is_404(
    client: httpx.AsyncClient, tenant: TenantWorld, other_tenant: TenantWorld, receiver: Receiver
) -> None:
    ep = await _endpoint(client, tenant, receiver.url)
    await _publish(tenant, "contact.created", {"x": 1})
    await run_worker_until_idle(["webhooks"])
    r = await client.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries", headers=tenant.headers(H))
    d = r.json()["items"][0]["id"]
    base = f"/v1/webhook-endpoints/{ep['id']}"
    snap = await api_snapshot(client, base, tenant)
    for method, path, body in [
        ("GET", base, None),
        ("PATCH", base, {"url": "https://evil.example.com/"}),
        ("DELETE", base, None),
        ("POST", f"{base}/rotate-secret", None),
        ("GET", f"{base}/deliveries", None),
        ("GET", f"{base}/deliveries/{d}", None),
        ("POST", f"{base}/deliveries/{d}/replay", None),
    ]:
        await assert_cross_tenant_refused(client, method, path, other_tenant, json=body, snapshot=snap)
    r = await client.get("/v1/webhook-endpoints", headers=other_tenant.headers(H))
    assert r.json()["items"] == []


async def test_event_is_delivered_signed_and_logged(
    client: httpx.AsyncClient, tenant: TenantWorld, receiver: Receiver
) -> None:
    ep = await _endpoint(client, tenant, receiver.url, ["contact.created"])
    other = await _endpoint(client, tenant, receiver.url, ["deal.won"])
    await _publish(tenant, "contact.created", {"name": "Ada"})
    await run_worker_until_idle(["webhooks"])
    [got] = receiver.received
    assert got.headers["content-type"] == "application/json"
    assert got.headers["x-tessera-event"] == "contact.created"
    assert reference_verify(ep["secret"], got.headers["x-tessera-signature"], got.body)
    assert not reference_verify(other["secret"], got.headers["x-tessera-signature"], got.body)
    assert not reference_verify(ep["secret"], got.headers["x-tessera-signature"], got.body + b" ")
    body = orjson.loads(got.body)
    assert body["type"] == "contact.created" and body["data"] == {"name": "Ada", "i": 0}
    assert uuid.UUID(body["id"]) and body["occurred_at"]
    r = await client.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries", headers=tenant.headers(H))
    [d] = r.json()["items"]
    assert d["status"] == "succeeded" and d["attempts"] == 1 and d["response_code"] == 200
    assert got.headers["x-tessera-delivery"] == d["id"]
    r = await client.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries/{d['id']}", headers=tenant.headers(H))
    [attempt] = r.json()["attempt_log"]
    assert attempt["response_code"] == 200 and attempt["latency_ms"] >= 0
    assert r.json()["body"] == got.body.decode()


def test_signing_module_matches_the_reference() -> None:
    secret = signing.new_secret()
    header = signing.sign(secret, b'{"a":1}')
    assert reference_verify(secret, header, b'{"a":1}')
    assert signing.verify(secret, header, b'{"a":1}')
    assert not signing.verify(secret, header, b'{"a":2}')
    old = signing.sign(secret, b"x", int(time.time()) - 3600)
    assert not signing.verify(secret, old, b"x")


async def test_deliveries_of_an_endpoint_arrive_in_order(
    client: httpx.AsyncClient, tenant: TenantWorld, receiver: Receiver
) -> None:
    receiver.delay = 0.005
    await _endpoint(client, tenant, receiver.url)
    await _publish(tenant, "contact.created", {}, n=25)
    await run_worker_until_idle(["webhooks"], concurrency=8)
    assert [orjson.loads(r.body)["data"]["i"] for r in receiver.received] == list(range(25))


async def test_failing_endpoint_is_retried_then_disabled_after_24h(
    client: httpx.AsyncClient, tenant: TenantWorld, receiver: Receiver
) -> None:
    receiver.status = 500
    ep = await _endpoint(client, tenant, receiver.url)
    await _publish(tenant, "contact.created", {})
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            d_id = (await s.execute(select(WebhookDelivery.id))).scalar_one()
        t0 = dt.datetime.now(dt.UTC)
        outcomes = []
        for hours in (0, 1, 12, 23.9):
            async with unit_of_work() as s:
                outcomes.append(await service.attempt_delivery(s, d_id, now=t0 + dt.timedelta(hours=hours)))
        assert [o.status for o in outcomes] == ["retry"] * 4
        assert 4 <= outcomes[0].retry_in <= 6  # type: ignore[operator]
        assert outcomes[1].retry_in > outcomes[0].retry_in  # type: ignore[operator]
        mail.outbox.clear()
        async with unit_of_work() as s:
            last = await service.attempt_delivery(s, d_id, now=t0 + dt.timedelta(hours=24, seconds=1))
        assert last.status == "failed"
        async with unit_of_work() as s:
            endpoint = await s.get(WebhookEndpoint, uuid.UUID(ep["id"]))
            delivery = await s.get(WebhookDelivery, d_id)
            actions = (await s.execute(select(AuditEvent.action))).scalars().all()
    assert endpoint is not None and endpoint.active is False and endpoint.disabled_reason
    assert delivery is not None and delivery.status == "failed" and delivery.attempts == 5
    assert delivery.response_code == 500 and delivery.last_error == "HTTP 500"
    assert "webhook_endpoint.disable" in actions
    to = sorted(m[0] for m in mail.outbox)
    assert to == sorted([tenant.emails["owner"], tenant.emails["admin"]])
    assert len(receiver.received) == 5
    # A disabled endpoint gets no new deliveries; re-enabling clears the failure state.
    await _publish(tenant, "contact.created", {})
    r = await client.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries", headers=tenant.headers(H))
    assert len(r.json()["items"]) == 1
    r = await client.patch(
        f"/v1/webhook-endpoints/{ep['id']}", headers=tenant.headers(H), json={"active": True}
    )
    assert r.json()["active"] is True and r.json()["failing_since"] is None


async def test_worker_retries_a_failed_delivery_and_logs_each_attempt(
    client: httpx.AsyncClient, tenant: TenantWorld, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(service, "retry_delay", lambda attempt: 0.0)
    receiver.script = [503, 503]
    ep = await _endpoint(client, tenant, receiver.url)
    await _publish(tenant, "contact.created", {})
    from tessera.core.jobs.worker import Worker

    w = Worker(["webhooks"], 2, poll_seconds=0.05)
    import asyncio

    task = asyncio.create_task(w.run())
    d: dict = {}
    for _ in range(1000):
        if len(receiver.received) >= 3:
            # The third attempt reached the receiver; wait until its outcome is recorded.
            r = await client.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries", headers=tenant.headers(H))
            [d] = r.json()["items"]
            if d["status"] != "pending":
                break
        await asyncio.sleep(0.02)
    w.stop()
    await asyncio.wait_for(task, 10)
    assert d["status"] == "succeeded" and d["attempts"] == 3
    r = await client.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries/{d['id']}", headers=tenant.headers(H))
    assert [a["response_code"] for a in r.json()["attempt_log"]] == [503, 503, 200]


async def test_replay_sends_a_delivery_again(
    client: httpx.AsyncClient, tenant: TenantWorld, receiver: Receiver
) -> None:
    ep = await _endpoint(client, tenant, receiver.url)
    await _publish(tenant, "contact.created", {"v": 1})
    await run_worker_until_idle(["webhooks"])
    r = await client.get(f"/v1/webhook-endpoints/{ep['id']}/deliveries", headers=tenant.headers(H))
    first = r.json()["items"][0]
    r = await client.post(
        f"/v1/webhook-endpoints/{ep['id']}/deliveries/{first['id']}/replay", headers=tenant.headers(H)
    )
    assert r.status_code == 202, r.text
    assert r.json()["replay_of"] == first["id"] and r.json()["seq"] == first["seq"] + 1
    await run_worker_until_idle(["webhooks"])
    assert len(receiver.received) == 2
    assert receiver.received[0].body == receiver.received[1].body


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.1.2.3/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://localhost/x",
        "http://192.168.0.10/x",
        "http://224.0.0.1/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://0.0.0.0/x",
    ],
)
async def test_ssrf_private_addresses_are_refused(url: str) -> None:
    with pytest.raises(ssrf.UnsafeUrl):
        await ssrf.resolve_public(url, allow_private=False)
    with pytest.raises(ssrf.UnsafeUrl):
        ssrf.check_literal(url, allow_private=False)
    assert await ssrf.resolve_public(url.replace("localhost", "127.0.0.1"), allow_private=True)


async def test_ssrf_refused_at_creation_and_at_delivery(
    client: httpx.AsyncClient, tenant: TenantWorld, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessera.settings import get_settings

    ep = await _endpoint(client, tenant, receiver.url)
    monkeypatch.setattr(get_settings(), "webhook_allow_private", False)
    r = await client.post(
        "/v1/webhook-endpoints",
        headers=tenant.headers(H),
        json={"url": "http://10.0.0.5/hook", "event_types": ["a.b"]},
    )
    assert r.status_code == 422 and r.json()["error"]["field"] == "url"
    assert r.json()["error"]["code"] == "webhook.unsafe_url"
    await _publish(tenant, "contact.created", {})
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            d_id = (await s.execute(select(WebhookDelivery.id))).scalar_one()
        async with unit_of_work() as s:
            out = await service.attempt_delivery(s, d_id)
        async with unit_of_work() as s:
            d = await s.get(WebhookDelivery, d_id)
    assert out.status == "retry"
    assert receiver.received == []
    assert d is not None and d.last_error and "not a public address" in d.last_error
    assert ep["id"]


async def test_redirects_are_not_followed(
    client: httpx.AsyncClient, tenant: TenantWorld, receiver: Receiver
) -> None:
    receiver.status = 302
    await _endpoint(client, tenant, receiver.url)
    await _publish(tenant, "contact.created", {})
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            d_id = (await s.execute(select(WebhookDelivery.id))).scalar_one()
        async with unit_of_work() as s:
            out = await service.attempt_delivery(s, d_id)
    assert out.status == "retry" and len(receiver.received) == 1
