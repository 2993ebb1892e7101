"""Webhook endpoints and deliveries.

Publishing an event creates one :class:`WebhookDelivery` per subscribed active endpoint and
one ``webhooks.deliver`` job for it, in the publisher's transaction. Deliveries of one
endpoint go out in ``seq`` order: a delivery whose predecessor is still pending waits
(without using an attempt) and the predecessor brings it forward when it finishes. Failed
attempts are retried with backoff for 24 hours; an endpoint failing continuously for 24
hours is disabled and the tenant's administrators are told (audit row and email).

The HTTP call happens outside any database transaction: on SQLite a transaction holds the
database's write lock, and on PostgreSQL a pooled connection, for as long as it is open.
"""

from __future__ import annotations

import datetime as dt
import random
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.audit import service as audit
from tessera.core.db.base import utcnow
from tessera.core.db.session import after_commit, unit_of_work
from tessera.core.http.errors import InvalidInput
from tessera.core.identity import mail
from tessera.core.identity.models import Role, User
from tessera.core.jobs import service as jobs
from tessera.core.webhooks import metrics, signing, ssrf
from tessera.core.webhooks.errors import DeliveryNotFound, EndpointNotFound, UnsafeWebhookUrl
from tessera.core.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from tessera.core.webhooks.schemas import EVENT_PATTERN, EndpointCreate, EndpointUpdate

DELIVER_JOB = "webhooks.deliver"
QUEUE = "webhooks"
RETRY_WINDOW = dt.timedelta(hours=24)
DISABLE_AFTER = dt.timedelta(hours=24)
TIMEOUT = 10.0
USER_AGENT = "Tessera-Webhooks/1"
_EVENT_RE = re.compile(EVENT_PATTERN)


# --- endpoints -------------------------------------------------------------------------------


def _check_url(url: str) -> None:
    try:
        ssrf.check_literal(url)
    except ssrf.UnsafeUrl as exc:
        raise UnsafeWebhookUrl(str(exc), field="url") from None


def _check_events(events: list[str]) -> list[str]:
    out: list[str] = []
    for i, e in enumerate(events):
        if not _EVENT_RE.match(e):
            raise InvalidInput(
                f"'{e}' is not an event name (lowercase words joined by dots) or '*'",
                field=f"event_types.{i}",
            )
        if e not in out:
            out.append(e)
    return out


def _snapshot(ep: WebhookEndpoint) -> dict[str, Any]:
    return {
        "url": ep.url,
        "event_types": list(ep.event_types),
        "active": ep.active,
        "description": ep.description,
    }


async def create_endpoint(session: AsyncSession, body: EndpointCreate) -> tuple[WebhookEndpoint, str]:
    _check_url(body.url)
    secret = signing.new_secret()
    ep = WebhookEndpoint(
        url=body.url,
        event_types=_check_events(body.event_types),
        description=body.description,
        active=body.active,
        secret=secret,
    )
    session.add(ep)
    await session.flush()
    await audit.record(session, "webhook_endpoint.create", "webhook_endpoint", ep.id, after=_snapshot(ep))
    return ep, secret


async def get_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID, *, lock: bool = False
) -> WebhookEndpoint:
    stmt = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if lock:
        stmt = stmt.with_for_update()
    ep = (await session.execute(stmt)).scalar_one_or_none()
    if ep is None:
        raise EndpointNotFound()
    return ep


async def update_endpoint(
    session: AsyncSession, endpoint_id: uuid.UUID, body: EndpointUpdate
) -> WebhookEndpoint:
    ep = await get_endpoint(session, endpoint_id, lock=True)
    before = _snapshot(ep)
    if body.url is not None:
        _check_url(body.url)
        ep.url = body.url
    if body.event_types is not None:
        ep.event_types = _check_events(body.event_types)
    if body.description is not None:
        ep.description = body.description
    if body.active is not None:
        ep.active = body.active
        if body.active:
            ep.disabled_reason = None
            ep.disabled_at = None
            ep.failing_since = None
    await session.flush()
    await audit.record(
        session, "webhook_endpoint.update", "webhook_endpoint", ep.id, before=before, after=_snapshot(ep)
    )
    return ep


async def delete_endpoint(session: AsyncSession, endpoint_id: uuid.UUID) -> None:
    ep = await get_endpoint(session, endpoint_id, lock=True)
    before = _snapshot(ep)
    await session.delete(ep)
    await session.flush()
    await audit.record(session, "webhook_endpoint.delete", "webhook_endpoint", endpoint_id, before=before)


async def rotate_secret(session: AsyncSession, endpoint_id: uuid.UUID) -> tuple[WebhookEndpoint, str]:
    ep = await get_endpoint(session, endpoint_id, lock=True)
    secret = signing.new_secret()
    ep.secret = secret
    await session.flush()
    await audit.record(
        session,
        "webhook_endpoint.rotate_secret",
        "webhook_endpoint",
        ep.id,
        changes={"secret": ["[redacted]", "[redacted]"]},
    )
    return ep, secret


# --- deliveries ------------------------------------------------------------------------------


def _body(env: dict[str, Any]) -> str:
    return orjson.dumps(
        {"id": env["event_id"], "type": env["event"], "occurred_at": env["occurred_at"], "data": env["data"]},
        default=str,
    ).decode()


async def _new_delivery(
    session: AsyncSession,
    ep: WebhookEndpoint,
    event_id: str,
    event_type: str,
    body: str,
    replay_of: uuid.UUID | None = None,
) -> WebhookDelivery:
    ep.next_seq += 1
    d = WebhookDelivery(
        endpoint_id=ep.id,
        seq=ep.next_seq,
        event_id=event_id,
        event_type=event_type,
        body=body,
        replay_of=replay_of,
        next_attempt_at=utcnow(),
    )
    session.add(d)
    await session.flush()
    # Deliveries of one endpoint form a chain: only the head has a job; each finished delivery
    # enqueues its successor (_wake_successor). The endpoint row is locked by the caller, which
    # orders this check against a predecessor finishing.
    earlier = (
        await session.execute(
            select(WebhookDelivery.id)
            .where(
                WebhookDelivery.endpoint_id == ep.id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.seq < d.seq,
            )
            .limit(1)
        )
    ).first()
    if earlier is None:
        d.job_id = await jobs.enqueue(session, DELIVER_JOB, {"delivery_id": str(d.id)}, queue=QUEUE)
    return d


async def fan_out(session: AsyncSession, env: dict[str, Any]) -> list[WebhookDelivery]:
    """One delivery per active endpoint of the tenant in scope subscribed to the event."""
    event = env["event"]
    endpoints = (
        (
            await session.execute(
                select(WebhookEndpoint)
                .where(WebhookEndpoint.active.is_(True))
                .order_by(WebhookEndpoint.id)
                .with_for_update()
            )
        )
        .scalars()
        .all()
    )
    body: str | None = None
    out = []
    for ep in endpoints:
        if event not in ep.event_types and "*" not in ep.event_types:
            continue
        body = body or _body(env)
        out.append(await _new_delivery(session, ep, env["event_id"], event, body))
    return out


async def replay(session: AsyncSession, delivery_id: uuid.UUID) -> WebhookDelivery:
    """Send a past delivery again (as a new delivery, after the endpoint's pending ones)."""
    old = (
        await session.execute(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id))
    ).scalar_one_or_none()
    if old is None:
        raise DeliveryNotFound()
    ep = await get_endpoint(session, old.endpoint_id, lock=True)
    d = await _new_delivery(session, ep, old.event_id, old.event_type, old.body, replay_of=old.id)
    await audit.record(
        session,
        "webhook_delivery.replay",
        "webhook_delivery",
        d.id,
        changes={"replay_of": [None, str(old.id)]},
    )
    return d


async def get_delivery(
    session: AsyncSession, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> WebhookDelivery:
    d = (
        await session.execute(
            select(WebhookDelivery).where(
                WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint_id
            )
        )
    ).scalar_one_or_none()
    if d is None:
        raise DeliveryNotFound()
    return d


async def attempts_of(session: AsyncSession, delivery_id: uuid.UUID) -> list[WebhookAttempt]:
    rows = await session.execute(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == delivery_id)
        .order_by(WebhookAttempt.attempt)
    )
    return list(rows.scalars())


def retry_delay(attempt: int) -> float:
    """Seconds before attempt ``attempt + 1``: 5 s, 15 s, 45 s … capped at 2 h, ±20 % jitter."""
    return float(min(7200.0, 5.0 * 3 ** (max(1, attempt) - 1)) * random.uniform(0.8, 1.2))


@dataclass(frozen=True)
class Outcome:
    status: str  # succeeded | retry | failed | waiting | cancelled | gone
    retry_in: float | None = None
    count_attempt: bool = True


_clients: dict[int, httpx.AsyncClient] = {}


def _client() -> httpx.AsyncClient:
    import asyncio

    key = id(asyncio.get_running_loop())
    c = _clients.get(key)
    if c is None or c.is_closed:
        c = httpx.AsyncClient(
            timeout=TIMEOUT,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
            headers={"User-Agent": USER_AGENT},
        )
        _clients.clear()
        _clients[key] = c
    return c


async def _post(
    client: httpx.AsyncClient,
    url: str,
    secret: str,
    d_id: uuid.UUID,
    event_type: str,
    body: str,
    now: dt.datetime,
) -> tuple[int | None, str | None, str | None, int]:
    """POST the body; returns (status code, response excerpt, error, latency ms)."""
    raw = body.encode()
    headers = {
        "Content-Type": "application/json",
        signing.HEADER: signing.sign(secret, raw, int(now.timestamp())),
        "X-Tessera-Event": event_type,
        "X-Tessera-Delivery": str(d_id),
    }
    started = time.perf_counter()
    try:
        await ssrf.resolve_public(url)
        resp = await client.post(url, content=raw, headers=headers)
        latency = int((time.perf_counter() - started) * 1000)
        return resp.status_code, resp.text[:1000], None, latency
    except ssrf.UnsafeUrl as exc:
        return None, None, f"refused: {exc}", int((time.perf_counter() - started) * 1000)
    except httpx.HTTPError as exc:
        latency = int((time.perf_counter() - started) * 1000)
        return None, None, f"{type(exc).__name__}: {exc}"[:1000], latency


async def attempt_delivery(
    session: AsyncSession,
    delivery_id: uuid.UUID,
    *,
    now: dt.datetime | None = None,
    client: httpx.AsyncClient | None = None,
) -> Outcome:
    """Try one delivery; write the result with ``session`` (the job's unit of work).

    ``now`` is the clock for retry windows and disabling (tests pass a later time instead of
    waiting a day). The endpoint and ordering are read in a short transaction of their own and
    the HTTP request is made with no transaction open."""
    now = now or utcnow()
    async with unit_of_work() as ro:
        d = (
            await ro.execute(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id))
        ).scalar_one_or_none()
        if d is None or d.status != "pending":
            return Outcome("gone")
        ep = (
            await ro.execute(select(WebhookEndpoint).where(WebhookEndpoint.id == d.endpoint_id))
        ).scalar_one()
        if not ep.active:
            inactive = True
        else:
            inactive = False
            prev = (
                await ro.execute(
                    select(WebhookDelivery.job_id)
                    .where(
                        WebhookDelivery.endpoint_id == d.endpoint_id,
                        WebhookDelivery.status == "pending",
                        WebhookDelivery.seq < d.seq,
                    )
                    .order_by(WebhookDelivery.seq.desc())
                    .limit(1)
                )
            ).first()
            wait = None
            if prev is not None and prev[0] is not None:
                state = (await jobs.job_states(ro, [prev[0]])).get(prev[0])
                if state is not None and state[0] == "running":
                    wait = 1.0
                elif state is not None and state[0] == "queued":
                    run_at = state[1] if state[1].tzinfo else state[1].replace(tzinfo=dt.UTC)
                    wait = max(0.05, (run_at - utcnow()).total_seconds() + 0.05)
            url, secret, body, event_type = ep.url, ep.secret, d.body, d.event_type
    if inactive:
        live = await session.get(WebhookDelivery, delivery_id, with_for_update=True)
        if live is not None and live.status == "pending":
            live.status = "cancelled"
            live.last_error = "the endpoint is disabled"
            await _wake_successor(session, live, now)
        return Outcome("cancelled")
    if wait is not None:
        return Outcome("waiting", retry_in=wait, count_attempt=False)

    code, excerpt, error, latency = await _post(
        client or _client(), url, secret, delivery_id, event_type, body, now
    )
    ok = code is not None and 200 <= code < 300
    if error is None and not ok:
        error = f"HTTP {code}"

    ep = await get_endpoint(session, d.endpoint_id, lock=True)
    d = (
        await session.execute(
            select(WebhookDelivery).where(WebhookDelivery.id == delivery_id).with_for_update()
        )
    ).scalar_one()
    d.attempts += 1
    session.add(
        WebhookAttempt(
            delivery_id=d.id,
            attempt=d.attempts,
            request_body=body,
            response_code=code,
            response_body=excerpt,
            latency_ms=latency,
            error=error,
            created_at=now,
        )
    )
    d.response_code = code
    d.latency_ms = latency
    metrics.WEBHOOK_LATENCY.observe(latency / 1000)
    if ok:
        d.status = "succeeded"
        d.delivered_at = now
        d.last_error = None
        d.next_attempt_at = None
        ep.failing_since = None
        ep.last_success_at = now
        await _wake_successor(session, d, now)
        metrics.WEBHOOK_DELIVERIES.labels("succeeded").inc()
        return Outcome("succeeded")

    d.last_error = error
    if ep.failing_since is None:
        ep.failing_since = now
    if ep.active and now - _aware(ep.failing_since) >= DISABLE_AFTER:
        await _disable(session, ep, now)
        d.status = "failed"
        d.next_attempt_at = None
        # The rest of the chain runs on and is cancelled, since the endpoint is now inactive.
        await _wake_successor(session, d, now)
        metrics.WEBHOOK_DELIVERIES.labels("endpoint_disabled").inc()
        return Outcome("failed")
    if now - _aware(d.created_at) >= RETRY_WINDOW:
        d.status = "failed"
        d.next_attempt_at = None
        await _wake_successor(session, d, now)
        metrics.WEBHOOK_DELIVERIES.labels("gave_up").inc()
        return Outcome("failed")
    delay = retry_delay(d.attempts)
    d.next_attempt_at = now + dt.timedelta(seconds=delay)
    metrics.WEBHOOK_DELIVERIES.labels("retry").inc()
    return Outcome("retry", retry_in=delay)


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def _wake_successor(session: AsyncSession, d: WebhookDelivery, now: dt.datetime) -> None:
    nxt = (
        await session.execute(
            select(WebhookDelivery)
            .where(
                WebhookDelivery.endpoint_id == d.endpoint_id,
                WebhookDelivery.status == "pending",
                WebhookDelivery.seq > d.seq,
            )
            .order_by(WebhookDelivery.seq)
            .limit(1)
        )
    ).scalar_one_or_none()
    if nxt is None:
        return
    if nxt.job_id is None:
        nxt.job_id = await jobs.enqueue(session, DELIVER_JOB, {"delivery_id": str(nxt.id)}, queue=QUEUE)
    else:
        await jobs.run_now(session, nxt.job_id, now=utcnow())


async def _disable(session: AsyncSession, ep: WebhookEndpoint, now: dt.datetime) -> None:
    since = _aware(ep.failing_since or now)
    ep.active = False
    ep.disabled_at = now
    ep.disabled_reason = f"every delivery failed since {since.isoformat()}"
    await audit.record(
        session,
        "webhook_endpoint.disable",
        "webhook_endpoint",
        ep.id,
        changes={"active": [True, False], "reason": [None, ep.disabled_reason]},
    )
    admins = (
        (
            await session.execute(
                select(User.email)
                .join(Role, Role.id == User.role_id)
                .where(Role.key.in_(("owner", "admin")), User.status == "active")
            )
        )
        .scalars()
        .all()
    )
    subject = "Tessera: a webhook endpoint was disabled"
    text = (
        f"The webhook endpoint {ep.url} (id {ep.id}) failed every delivery for 24 hours and "
        f"has been disabled. Fix the receiver, then re-enable the endpoint and replay the "
        f"failed deliveries from the console or the API."
    )
    tenant_id = context.current_tenant_id()

    async def notify() -> None:
        with context.tenant_scope(tenant_id):
            for email in admins:
                await mail.send_email(email, subject, text)

    after_commit(session, notify)
