"""The periodic alert evaluator."""

from __future__ import annotations

from typing import Any

from tessera.core.monitoring import service


async def evaluate_alerts(payload: dict[str, Any], job: Any) -> None:
    await service.evaluate(job.session)


try:
    from tessera.core.jobs.registry import handler, periodic
except ModuleNotFoundError:  # no job queue installed: evaluate through the operator API
    pass
else:
    handler("monitoring.evaluate", queue="maintenance", max_attempts=1)(evaluate_alerts)
    periodic("monitoring.evaluate", "* * * * *", queue="maintenance")
