"""Hooks run on the connection at the start of every transaction.

Lets kernel modules (the crypto keyring) prepare per-tenant state on the transaction's own
connection without core/db importing them.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from sqlalchemy.engine import Connection

BeginHook = Callable[[Connection, uuid.UUID], None]
on_tenant_begin: list[BeginHook] = []


def register_begin_hook(hook: BeginHook) -> None:
    if hook not in on_tenant_begin:
        on_tenant_begin.append(hook)
