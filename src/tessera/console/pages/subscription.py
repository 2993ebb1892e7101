"""Subscription: plan, modules, quotas with usage, and usage per day (needs admin:subscription).

Mounted only when the subscription kernel is installed (``tessera.core.subscription.service``).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Annotated, Any

from fastapi import Depends
from fastapi.responses import Response
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.console import i18n
from tessera.console.components import Chart
from tessera.console.i18n import _
from tessera.console.registry import NavItem, Tile, register_nav, register_tile
from tessera.console.web import PREFIX, Page, console_router, page
from tessera.core.access.principal import Principal
from tessera.core.subscription import service as subscription

router = console_router("/admin")
Billing = Annotated[Page, Depends(page("admin:subscription"))]

register_nav(
    NavItem(
        "admin.subscription",
        "Subscription",
        f"{PREFIX}/admin/subscription",
        "admin:subscription",
        "admin",
        order=70,
    )
)


def _pct(used: int, limit: int | None) -> int | None:
    if not limit:
        return None
    return min(100, round(used * 100 / limit))


@register_tile
async def seats_tile(session: AsyncSession, principal: Principal) -> Tile | None:
    if not principal.has("admin:subscription"):
        return None
    ent = await subscription.effective_entitlements(session)
    totals = {t["meter"]: t for t in await subscription.current_totals(session, ent)}
    seats = totals.get("seats")
    if seats is None:
        return None
    value = i18n.format_number(seats["used"])
    if seats["limit"] is not None:
        value += f" / {i18n.format_number(seats['limit'])}"
    return Tile(_("Seats in use"), value, f"{PREFIX}/admin/subscription", order=50)


@router.get("/subscription")
async def subscription_page(pg: Billing) -> Response:
    ent, start, end, rows = await subscription.usage_by_day(pg.session, None)
    totals = await subscription.current_totals(pg.session, ent)
    for t in totals:
        t["pct"] = _pct(t["used"], t["limit"])
    days: list[str] = []
    d = start.date()
    while d < min(end.date(), dt.date.today() + dt.timedelta(days=1)):
        days.append(d.isoformat())
        d += dt.timedelta(days=1)
    per_meter: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        per_meter[r["meter"]][r["day"]] = r["amount"]
    palette = ["#206bc4", "#2fb344", "#f59f00", "#d63939", "#ae3ec9", "#17a2b8"]
    datasets: list[dict[str, Any]] = [
        {
            "label": meter,
            "data": [vals.get(day, 0) for day in days],
            "backgroundColor": palette[i % len(palette)],
        }
        for i, (meter, vals) in enumerate(sorted(per_meter.items()))
    ]
    chart = Chart(
        "usage",
        _("Usage this period"),
        "bar",
        [day[5:] for day in days],
        datasets,
        {"animation": False, "scales": {"x": {"stacked": True}, "y": {"stacked": True, "beginAtZero": True}}},
    )
    return pg.render(
        "console/admin/subscription.html",
        ent=ent,
        totals=totals,
        chart=chart if datasets else None,
        start=start,
        end=end,
    )
