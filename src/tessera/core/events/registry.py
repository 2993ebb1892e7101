"""Domain event subscriptions, declared at import time in each context's events.py.

```python
subscriber("contact.created", "marketing.enrol_new_contact")   # an existing job handler

@on("contact.created", queue="marketing")
async def enrol(payload: dict, job: JobContext) -> None:
    payload["data"]  # what the publisher sent; also event_id, event, occurred_at
```

Each subscriber gets its own job per event, so one slow or failing subscriber never holds up
another, and each retries on its own.
"""

from __future__ import annotations

from collections.abc import Callable

from tessera.core.jobs.registry import HandlerFn, handler

SUBSCRIBERS: dict[str, list[str]] = {}


def subscriber(event_name: str, handler_name: str) -> None:
    """Run job handler ``handler_name`` for every ``event_name`` published."""
    names = SUBSCRIBERS.setdefault(event_name, [])
    if handler_name not in names:
        names.append(handler_name)


def on(
    event_name: str, *, queue: str = "events", max_attempts: int = 10, name: str | None = None
) -> Callable[[HandlerFn], HandlerFn]:
    """Register the decorated function as a job handler subscribed to ``event_name``.

    Its handler name is ``name`` or ``<module>.<function>@<event>``."""

    def deco(fn: HandlerFn) -> HandlerFn:
        hname = name or f"{fn.__module__}.{fn.__qualname__}@{event_name}"
        handler(hname, queue=queue, max_attempts=max_attempts)(fn)
        subscriber(event_name, hname)
        return fn

    return deco


def subscribers_of(event_name: str) -> list[str]:
    return list(SUBSCRIBERS.get(event_name, ()))
