"""Wires subscription into the kernel: a plan for new tenants, seat limits on users."""

from __future__ import annotations

from tessera.core.identity import service as identity
from tessera.core.subscription.service import check_seats, on_tenant_created
from tessera.core.tenancy import service as tenancy

if on_tenant_created not in tenancy.on_tenant_created:
    tenancy.on_tenant_created.append(on_tenant_created)
if check_seats not in identity.seat_check_hooks:
    identity.seat_check_hooks.append(check_seats)
