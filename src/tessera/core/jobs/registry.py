"""Job handlers and periodic (cron) jobs, declared at import time by each context's tasks.py.

```python
@handler("contacts.import", queue="imports", max_attempts=5)
async def run_import(payload: dict, job: JobContext) -> None: ...

periodic("contacts.dedupe_nightly", "0 3 * * *", queue="maintenance")
```

A handler gets the payload and a :class:`JobContext` whose ``session`` is the job's unit of
work: the runner commits it together with marking the job done, so the handler must not
commit. ``job.reschedule(seconds)`` commits the handler's writes and runs the job again later
(webhook retries use it to keep the log of a failed attempt).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter
from sqlalchemy.ext.asyncio import AsyncSession

HandlerFn = Callable[[dict[str, Any], "JobContext"], Awaitable[None]]
Backoff = Callable[[int], float]


@dataclass
class JobContext:
    id: uuid.UUID
    name: str
    attempt: int
    max_attempts: int
    tenant_id: uuid.UUID | None
    session: AsyncSession
    queue: str = "default"
    _reschedule: tuple[float, bool] | None = field(default=None, repr=False)

    def reschedule(self, seconds: float, *, count_attempt: bool = True) -> None:
        """Commit this run's writes and run the job again in ``seconds``.

        ``count_attempt=False`` gives the attempt back (waiting, not failing)."""
        self._reschedule = (max(0.0, seconds), count_attempt)


@dataclass(frozen=True)
class HandlerSpec:
    name: str
    fn: HandlerFn
    queue: str
    max_attempts: int
    backoff: Backoff | None = None


@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    cron: str
    queue: str
    payload: dict[str, Any]


HANDLERS: dict[str, HandlerSpec] = {}
PERIODIC: dict[str, PeriodicSpec] = {}


def handler(
    name: str, *, queue: str = "default", max_attempts: int = 10, backoff: Backoff | None = None
) -> Callable[[HandlerFn], HandlerFn]:
    """Register ``async def fn(payload, job)`` as the handler of jobs named ``name``.

    ``backoff(attempt) -> seconds`` replaces the default exponential backoff."""
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")

    def deco(fn: HandlerFn) -> HandlerFn:
        HANDLERS[name] = HandlerSpec(name, fn, queue, max_attempts, backoff)
        return fn

    return deco


def periodic(name: str, cron: str, *, queue: str = "default", payload: dict[str, Any] | None = None) -> None:
    """Enqueue handler ``name`` at every due time of ``cron`` (exactly once across workers)."""
    if not croniter.is_valid(cron):
        raise ValueError(f"invalid cron expression {cron!r} for periodic job {name!r}")
    PERIODIC[name] = PeriodicSpec(name, cron, queue, dict(payload or {}))


def get(name: str) -> HandlerSpec | None:
    return HANDLERS.get(name)
