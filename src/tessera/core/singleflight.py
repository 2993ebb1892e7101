"""One call for many waiters: concurrent lookups of the same key share one call's result.

When a cached answer expires under load (a tenant's status, an API key's principal), every
request then in flight would look it up again at once, each with its own database work. A
:class:`SingleFlight` lets the first do it and the others await its result (or its exception).
If the first is cancelled, the others are not failed with it: each does the lookup itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")


class SingleFlight(Generic[K, T]):
    def __init__(self) -> None:
        self._pending: dict[K, asyncio.Future[T]] = {}

    def in_flight(self, key: K) -> bool:
        return key in self._pending

    async def run(self, key: K, call: Callable[[], Awaitable[T]]) -> T:
        """``await call()``, or the result of the call already running for ``key``."""
        pending = self._pending.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The call doing the lookup went away; do it ourselves.
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending[key] = fut
        try:
            result = await call()
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "exception never retrieved" warning without waiters
            raise
        else:
            fut.set_result(result)
            return result
        finally:
            if not fut.done():  # cancelled: the waiters look it up themselves
                fut.cancel()
            if self._pending.get(key) is fut:
                del self._pending[key]
