from __future__ import annotations

from tessera.core.http.errors import Conflict, Forbidden, InvalidInput, NotFound, TesseraError


class QuotaExceeded(TesseraError):
    """The subscription's allowance for this meter is used up."""

    code = "subscription.quota_exceeded"
    status = 402


class ModuleNotIncluded(Forbidden):
    """The subscription does not include this module."""

    code = "subscription.module_not_included"


class PlanNotFound(NotFound):
    """Plan not found."""

    code = "subscription.plan_not_found"


class AddOnNotFound(NotFound):
    """Add-on not found."""

    code = "subscription.addon_not_found"


class PlanInUse(Conflict):
    """Tenants are subscribed to this plan version."""

    code = "subscription.plan_in_use"


class UnknownMeter(InvalidInput):
    """Unknown meter."""

    code = "subscription.unknown_meter"
