from __future__ import annotations

from tessera.core.http.errors import Conflict, NotFound


class TenantNotFound(NotFound):
    """Tenant not found."""

    code = "tenant.not_found"


class DuplicateSlug(Conflict):
    """A tenant with this slug already exists."""

    code = "tenant.duplicate_slug"
