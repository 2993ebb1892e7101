"""Start-up and shutdown hooks that kernel modules and contexts register into.

The app factory runs them in the ASGI lifespan (embedded job workers, the SMSC simulator in
demo mode, …), so ``tessera serve`` and ``tessera demo`` start everything in one process.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Hook = Callable[[Any], Awaitable[None]]
on_startup: list[Hook] = []
on_shutdown: list[Hook] = []


def startup(fn: Hook) -> Hook:
    on_startup.append(fn)
    return fn


def shutdown(fn: Hook) -> Hook:
    on_shutdown.append(fn)
    return fn
