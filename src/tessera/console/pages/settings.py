"""Tenant settings: name, language, time zone, currency, default phone region."""

from __future__ import annotations

import zoneinfo
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response

from tessera.console.components import Form, apply_error, form_data, refill, schema_form, validate_form
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, console_router, page
from tessera.core.http.errors import TesseraError
from tessera.core.tenancy import service as tenancy
from tessera.core.tenancy.models import Tenant
from tessera.core.tenancy.schemas import TenantSettings

router = console_router("/admin")
SettingsAdmin = Annotated[Page, Depends(page("admin:settings"))]

register_nav(
    NavItem("admin.settings", "Settings", f"{PREFIX}/admin/settings", "admin:settings", "admin", order=60)
)

FIELDS = ["name", "locale", "timezone", "currency", "default_region"]
COMMON_TZ = [
    "UTC",
    "Asia/Shanghai",
    "Asia/Hong_Kong",
    "Asia/Singapore",
    "Asia/Tokyo",
    "Europe/London",
    "Europe/Berlin",
    "America/New_York",
    "America/Los_Angeles",
]


def settings_form(tenant: Tenant) -> Form:
    zones = COMMON_TZ + sorted(z for z in zoneinfo.available_timezones() if z not in COMMON_TZ and "/" in z)
    return schema_form(
        TenantSettings,
        {
            "name": tenant.name,
            "locale": tenant.locale,
            "timezone": tenant.timezone,
            "currency": tenant.currency,
            "default_region": tenant.default_region,
        },
        only=FIELDS,
        labels={
            "name": _("Workspace name"),
            "locale": _("Default language"),
            "timezone": _("Time zone"),
            "currency": _("Currency"),
            "default_region": _("Default phone region"),
        },
        options={"locale": [("en", "English"), ("zh_Hans", "简体中文")], "timezone": [(z, z) for z in zones]},
        help={
            "currency": _("ISO 4217 code, e.g. CNY or USD."),
            "default_region": _("ISO 3166 country code used to read local phone numbers, e.g. CN."),
        },
    )


@router.get("/settings")
async def settings_page(pg: SettingsAdmin) -> Response:
    assert pg.tenant
    return pg.render("console/admin/settings.html", form=settings_form(pg.tenant), slug=pg.tenant.slug)


@router.post("/settings")
async def settings_submit(pg: SettingsAdmin, request: Request) -> Response:
    assert pg.tenant and pg.principal
    raw = await request.form()
    data = form_data(raw, TenantSettings, only=FIELDS)
    form = settings_form(pg.tenant)
    body = validate_form(TenantSettings, data, form)
    if body is not None:
        try:
            await tenancy.update_settings(pg.session, pg.principal.tenant_id, body)  # type: ignore[arg-type]
            return pg.redirect(f"{PREFIX}/admin/settings", toast=_("Settings saved."))
        except TesseraError as exc:
            apply_error(form, exc)
    return pg.render(
        "console/admin/settings.html", form=refill(form, data), slug=pg.tenant.slug, status_code=422
    )
