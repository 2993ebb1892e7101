"""Alert evaluation (PLT-9): compute each rule's metric, open or resolve its incident, notify.

Metrics are named functions ``async fn(session, window_minutes) -> float`` in :data:`METRICS`;
other modules add theirs with :func:`register_metric`. The evaluator runs as a periodic job
on a platform session; notifications are sent after the transaction commits.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.db.base import utcnow
from tessera.core.db.session import after_commit
from tessera.core.http.errors import InvalidInput, NotFound
from tessera.core.metrics import HTTP_REQUESTS
from tessera.core.monitoring.models import AlertRule, Incident
from tessera.core.monitoring.notifiers import IncidentEvent, LogNotifier, Notifier, WebhookNotifier

MetricFn = Callable[[AsyncSession, int], Awaitable[float]]
METRICS: dict[str, MetricFn] = {}


class RuleNotFound(NotFound):
    """Alert rule not found."""

    code = "monitoring.rule_not_found"


class MetricUnavailable(RuntimeError):
    """The metric's source is not installed here."""


def register_metric(name: str, fn: MetricFn) -> None:
    METRICS[name] = fn


async def _table_exists(session: AsyncSession, name: str) -> bool:
    def check(sync: Any) -> bool:
        from sqlalchemy import inspect

        return bool(inspect(sync.connection()).has_table(name))

    return await session.run_sync(check)


async def jobs_queue_depth(session: AsyncSession, window: int) -> float:
    """Jobs due and waiting to be claimed."""
    if not await _table_exists(session, "jobs"):
        raise MetricUnavailable("jobs")
    q = text("SELECT count(*) FROM jobs WHERE status = 'queued' AND run_at <= :now")
    return float((await session.execute(q, {"now": _bind_now(session)})).scalar_one())


async def jobs_dead(session: AsyncSession, window: int) -> float:
    """Jobs moved to dead in the last ``window`` minutes."""
    if not await _table_exists(session, "jobs"):
        raise MetricUnavailable("jobs")
    since = utcnow() - dt.timedelta(minutes=window)
    q = text("SELECT count(*) FROM jobs WHERE status = 'dead' AND finished_at >= :since")
    return float((await session.execute(q, {"since": _bind_dt(session, since)})).scalar_one())


def _bind_dt(session: AsyncSession, value: dt.datetime) -> Any:
    # Raw SQL skips the UTCDateTime type: SQLite stores naive UTC text.
    if session.get_bind().dialect.name == "sqlite":
        return value.astimezone(dt.UTC).replace(tzinfo=None).isoformat(sep=" ")
    return value


def _bind_now(session: AsyncSession) -> Any:
    return _bind_dt(session, utcnow())


# The prometheus counter is cumulative; the 5xx rate over a window is the difference between
# now and the oldest sample inside the window, kept in process.
_http_samples: deque[tuple[float, float, float]] = deque(maxlen=10_000)


def _http_totals() -> tuple[float, float]:
    total = errors = 0.0
    for metric in HTTP_REQUESTS.collect():
        for s in metric.samples:
            if s.name.endswith("_total"):
                total += s.value
                if s.labels.get("status", "").startswith("5"):
                    errors += s.value
    return total, errors


async def http_5xx_rate(session: AsyncSession, window: int) -> float:
    """Share of HTTP responses with a 5xx status over the window (0..1) in this process."""
    now = time.monotonic()
    total, errors = _http_totals()
    _http_samples.append((now, total, errors))
    horizon = now - window * 60
    while len(_http_samples) > 1 and _http_samples[1][0] <= horizon:
        _http_samples.popleft()
    t0, total0, errors0 = _http_samples[0]
    if t0 == now:  # first sample: rate since process start
        total0 = errors0 = 0.0
    requests = total - total0
    return (errors - errors0) / requests if requests > 0 else 0.0


async def webhooks_failed_deliveries(session: AsyncSession, window: int) -> float:
    """Webhook deliveries that failed in the last ``window`` minutes, over every tenant.

    Deliveries are tenant-owned and row-level security hides them from a platform session,
    so this counts tenant by tenant, each in its own scope (one small query per tenant).
    """
    try:
        from tessera.core.webhooks.models import WebhookDelivery
    except ModuleNotFoundError:
        raise MetricUnavailable("webhooks") from None
    from sqlalchemy import func

    from tessera.core.db.session import switch_tenant
    from tessera.core.tenancy.models import Tenant

    since = utcnow() - dt.timedelta(minutes=window)
    total = 0
    tenant_ids = list((await session.execute(select(Tenant.id))).scalars())
    try:
        for tid in tenant_ids:
            await switch_tenant(session, tid)
            total += int(
                (
                    await session.execute(
                        select(func.count())
                        .select_from(WebhookDelivery)
                        .where(WebhookDelivery.status == "failed", WebhookDelivery.updated_at >= since)
                    )
                ).scalar_one()
            )
    finally:
        await switch_tenant(session, None)
    return float(total)


register_metric("jobs.queue_depth", jobs_queue_depth)
register_metric("webhooks.failed_deliveries", webhooks_failed_deliveries)
register_metric("jobs.dead", jobs_dead)
register_metric("http.5xx_rate", http_5xx_rate)


def _breached(rule: AlertRule, value: float) -> bool:
    return value > rule.threshold if rule.condition == ">" else value < rule.threshold


def notifiers_for(rule: AlertRule) -> list[Notifier]:
    out: list[Notifier] = [LogNotifier()]
    if rule.notify_url:
        out.append(WebhookNotifier(rule.notify_url))
    return out


NotifierFactory = Callable[[AlertRule], list[Notifier]]


async def evaluate(
    session: AsyncSession, *, now: dt.datetime | None = None, notifiers: NotifierFactory = notifiers_for
) -> list[IncidentEvent]:
    """One evaluation round over every enabled rule. Returns the incident changes made."""
    now = now or utcnow()
    rules = list((await session.execute(select(AlertRule).where(AlertRule.enabled.is_(True)))).scalars())
    open_by_rule = {
        i.rule_id: i
        for i in (await session.execute(select(Incident).where(Incident.status == "open"))).scalars()
    }
    events: list[tuple[IncidentEvent, list[Notifier]]] = []
    for rule in rules:
        fn = METRICS.get(rule.metric)
        if fn is None:
            continue
        try:
            value = await fn(session, rule.window_minutes)
        except MetricUnavailable:
            continue
        current = open_by_rule.get(rule.id)
        if _breached(rule, value):
            if current is None:
                current = Incident(
                    rule_id=rule.id,
                    status="open",
                    opened_at=now,
                    value=value,
                    last_value=value,
                    message=f"{rule.metric} = {value:g} {rule.condition} {rule.threshold:g}",
                )
                session.add(current)
                await session.flush()
                events.append((_event("opened", current, rule, value, now), notifiers(rule)))
            else:
                current.last_value = value
        elif current is not None:
            current.status, current.resolved_at, current.last_value = "resolved", now, value
            events.append((_event("resolved", current, rule, value, now), notifiers(rule)))
    await session.flush()

    async def send() -> None:
        for ev, targets in events:
            for n in targets:
                await n.notify(ev)

    if events:
        after_commit(session, send)
    return [e for e, _ in events]


def _event(kind: str, inc: Incident, rule: AlertRule, value: float, at: dt.datetime) -> IncidentEvent:
    return IncidentEvent(
        kind,
        str(inc.id),
        str(rule.id),
        rule.name,
        rule.metric,
        rule.condition,
        rule.threshold,
        value,
        rule.severity,
        at,
    )


async def current_values(session: AsyncSession, window: int = 5) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for name, fn in sorted(METRICS.items()):
        try:
            out[name] = await fn(session, window)
        except MetricUnavailable:
            out[name] = None
    return out


# --- rules ------------------------------------------------------------------------------------


def _validate(data: dict[str, Any]) -> None:
    if "metric" in data and data["metric"] not in METRICS:
        raise InvalidInput(f"unknown metric; one of {', '.join(sorted(METRICS))}", field="metric")


async def create_rule(session: AsyncSession, data: dict[str, Any]) -> AlertRule:
    _validate(data)
    rule = AlertRule(**data)
    session.add(rule)
    await session.flush()
    return rule


async def get_rule(session: AsyncSession, rule_id: uuid.UUID) -> AlertRule:
    rule = await session.get(AlertRule, rule_id)
    if rule is None:
        raise RuleNotFound()
    return rule


async def update_rule(session: AsyncSession, rule_id: uuid.UUID, data: dict[str, Any]) -> AlertRule:
    _validate(data)
    rule = await get_rule(session, rule_id)
    for k, v in data.items():
        setattr(rule, k, v)
    await session.flush()
    return rule


async def delete_rule(session: AsyncSession, rule_id: uuid.UUID) -> None:
    await session.delete(await get_rule(session, rule_id))
    await session.flush()


async def list_incidents(session: AsyncSession, status: str | None, limit: int) -> list[Incident]:
    stmt = select(Incident).order_by(Incident.opened_at.desc()).limit(limit)
    if status:
        stmt = stmt.where(Incident.status == status)
    return list((await session.execute(stmt)).scalars())
