"""Verification statistics (``messages:read``): sent, delivered, approved, conversion rate and
time to delivery per day (tenant time zone) and per template, and the latest verifications.
Codes are never stored in clear, so they cannot be shown; numbers are masked without
``pii:view``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends
from fastapi.responses import Response

from tessera.connect.service import console_compliance as reads
from tessera.connect.views.compliance import show_address
from tessera.console import i18n
from tessera.console.components import Chart, _l
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.core.db.base import utcnow

add_template_dir(Path(__file__).resolve().parents[1] / "templates")
router = console_router("/connect/verify")
Reader = Annotated[Page, Depends(page("messages:read"))]
BASE = f"{PREFIX}/connect/verify"
PERIODS = (7, 14, 30)

register_nav(NavItem("connect.verify", "Verification", BASE, "messages:read", module="connect", order=260))

STATUS_LABELS = {
    "pending": _l("Pending"),
    "approved": _l("Approved"),
    "expired": _l("Expired"),
    "refused": _l("Refused"),
}
_OPTS = {"animation": False, "scales": {"y": {"beginAtZero": True, "ticks": {"precision": 0}}}}


def _volume(buckets: Sequence[Any]) -> list[dict[str, Any]]:
    """Sent, delivered and approved bars of a list of buckets (days or templates)."""
    return [
        {"label": _("Sent"), "data": [b.sent for b in buckets], "backgroundColor": "#206bc4"},
        {"label": _("Delivered"), "data": [b.delivered for b in buckets], "backgroundColor": "#4299e1"},
        {"label": _("Approved"), "data": [b.approved for b in buckets], "backgroundColor": "#2fb344"},
    ]


def charts(stats: reads.VerifyStats) -> list[Chart]:
    labels = [b.key[5:] for b in stats.days]  # MM-DD
    tpl = [b.key for b in stats.templates]
    return [
        Chart(
            "verify-volume",
            _("Sent, delivered and approved per day"),
            "bar",
            labels,
            _volume(stats.days),
            _OPTS,
        ),
        Chart(
            "verify-conversion",
            _("Conversion rate per day (%)"),
            "line",
            labels,
            [
                {
                    "label": _("Conversion rate"),
                    "data": [b.conversion for b in stats.days],
                    "borderColor": "#2fb344",
                }
            ],
            {"animation": False, "scales": {"y": {"beginAtZero": True, "max": 100}}},
        ),
        Chart(
            "verify-latency",
            _("Average time to delivery per day (seconds)"),
            "line",
            labels,
            [{"label": _("Seconds"), "data": [b.avg_seconds for b in stats.days], "borderColor": "#f76707"}],
            {"animation": False, "spanGaps": True, "scales": {"y": {"beginAtZero": True}}},
        ),
        Chart(
            "verify-templates",
            _("Per template"),
            "bar",
            tpl,
            _volume(stats.templates),
            _OPTS,
        ),
        Chart(
            "verify-template-conversion",
            _("Conversion rate per template (%)"),
            "bar",
            tpl,
            [
                {
                    "label": _("Conversion rate"),
                    "data": [b.conversion for b in stats.templates],
                    "backgroundColor": "#2fb344",
                }
            ],
            {"animation": False, "scales": {"y": {"beginAtZero": True, "max": 100}}},
        ),
        Chart(
            "verify-template-latency",
            _("Average time to delivery per template (seconds)"),
            "bar",
            tpl,
            [
                {
                    "label": _("Seconds"),
                    "data": [b.avg_seconds for b in stats.templates],
                    "backgroundColor": "#f76707",
                }
            ],
            {"animation": False, "scales": {"y": {"beginAtZero": True}}},
        ),
    ]


@router.get("")
async def stats_page(pg: Reader, days: int = 7) -> Response:
    if days not in PERIODS:
        days = 7
    stats = await reads.verify_stats(pg.session, days=days, tz=i18n.current_timezone(), now=utcnow())
    recent = await reads.recent_verifications(pg.session, limit=50)
    return pg.render(
        "connect/verify_stats.html",
        stats=stats,
        charts=charts(stats),
        recent=recent,
        days=days,
        periods=PERIODS,
        status_labels=STATUS_LABELS,
        show=lambda v: show_address(pg, v),
    )
