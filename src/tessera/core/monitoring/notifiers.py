"""Where incident changes go: the log always, an operator-configured URL when set."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Protocol

import httpx
import structlog

log = structlog.get_logger("tessera.monitoring")


@dataclass(frozen=True)
class IncidentEvent:
    kind: str  # "opened" | "resolved"
    incident_id: str
    rule_id: str
    rule_name: str
    metric: str
    condition: str
    threshold: float
    value: float
    severity: str
    at: dt.datetime

    def as_json(self) -> dict[str, object]:
        d = asdict(self)
        d["at"] = self.at.isoformat()
        return d


class Notifier(Protocol):
    async def notify(self, event: IncidentEvent) -> None: ...


class LogNotifier:
    async def notify(self, event: IncidentEvent) -> None:
        level = log.error if event.kind == "opened" and event.severity == "critical" else log.warning
        level("incident." + event.kind, **event.as_json())


class WebhookNotifier:
    """POSTs the event as JSON; a failure is logged, never raised (alerting must not crash)."""

    def __init__(
        self, url: str, *, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.transport = transport

    async def notify(self, event: IncidentEvent) -> None:
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
                r = await client.post(
                    self.url, json={"type": f"incident.{event.kind}", "incident": event.as_json()}
                )
                r.raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("incident.notify_failed", url=self.url, error=str(exc))
