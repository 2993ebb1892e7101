"""The installation's modules: which routers, console views and model modules are mounted.

Kernel routers are always present; a context is mounted when its package provides the
module named here. Import order is the navigation order of the console.
"""

from __future__ import annotations

import importlib
from types import ModuleType

ROUTERS = [
    "tessera.core.identity.api",
    "tessera.core.tenancy.api",
    "tessera.core.audit.api",
    "tessera.core.jobs.api",
    "tessera.core.webhooks.api",
    "tessera.core.subscription.api",
    "tessera.core.backup.api",
    "tessera.core.monitoring.api",
    "tessera.contacts.api",
    "tessera.connect.api",
    "tessera.connect.compliance.api",
    "tessera.connect.verify.api",
    "tessera.connect.inbound.api",
]

VIEWS = [
    "tessera.console.views",
    "tessera.contacts.views",
    "tessera.connect.views",
]

# Imported at start-up so that events, job handlers and hooks register themselves.
REGISTRATIONS = [
    "tessera.core.jobs.handlers",
    "tessera.core.events.registry",
    "tessera.core.webhooks.tasks",
    "tessera.core.subscription.hooks",
    "tessera.core.backup.tasks",
    "tessera.core.monitoring.tasks",
    "tessera.contacts.events",
    "tessera.contacts.tasks",
    "tessera.connect.events",
    "tessera.connect.tasks",
]

# Each provides ``async def setup(settings)`` adding demo data to the demo tenant.
DEMO_SETUP = [
    "tessera.connect.demo",
    "tessera.contacts.demo",
]


def optional_import(name: str) -> ModuleType | None:
    """Import ``name``; None when that module (or its package) does not exist."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            return None
        raise


def load(names: list[str]) -> list[ModuleType]:
    return [m for m in (optional_import(n) for n in names) if m is not None]
