"""Imports every model module so that ``Base.metadata`` is complete (migrations, tests)."""

from __future__ import annotations

import importlib

MODEL_MODULES = [
    "tessera.core.tenancy.models",
    "tessera.core.crypto.models",
    "tessera.core.identity.models",
    "tessera.core.audit.models",
    "tessera.core.http.models",
    "tessera.core.jobs.models",
    "tessera.core.events.models",
    "tessera.core.webhooks.models",
    "tessera.core.subscription.models",
    "tessera.core.backup.models",
    "tessera.core.monitoring.models",
    "tessera.console.models",
    "tessera.contacts.models",
    "tessera.connect.models",
    "tessera.connect.compliance.models",
    "tessera.connect.verify.models",
    "tessera.connect.inbound.models",
]


def load_all() -> None:
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not name.startswith(exc.name):
                raise
