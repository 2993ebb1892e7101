"""Data-quality dashboard: completeness per field, invalid phones and emails, duplicate rate,
from the data-quality service; a snapshot that "Recompute now" refreshes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response

from tessera.console.components import Action, Chart, _l
from tessera.console.i18n import _, format_number
from tessera.console.registry import NavItem, Tile, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.contacts.service import console_data

router = console_router("/contacts/quality")
add_template_dir(Path(__file__).resolve().parents[1] / "templates")
Reader = Annotated[Page, Depends(page("contacts:read"))]
Writer = Annotated[Page, Depends(page("contacts:write"))]
BASE = f"{PREFIX}/contacts/quality"

register_nav(NavItem("contacts.quality", "Data quality", BASE, "contacts:read", module="contacts", order=26))

FIELD_LABELS = {
    "phone": _l("Phone"),
    "email": _l("Email"),
    "city": _l("City"),
    "gender": _l("Gender"),
    "birthday": _l("Birthday"),
    "address": _l("Address"),
    "account_id": _l("Account"),
    "owner_id": _l("Owner"),
    "language": _l("Language"),
}


def _pct(x: float) -> str:
    return f"{format_number(round(x * 100, 1))}%"


@router.get("")
async def quality_page(pg: Reader) -> Response:
    q, at = await console_data.quality_figures(pg.session)
    order = [f for f in FIELD_LABELS if f in q.completeness] + sorted(set(q.completeness) - set(FIELD_LABELS))
    tiles = [
        Tile(_("Contacts"), format_number(q.contacts), f"{PREFIX}/contacts"),
        Tile(_("With a phone"), _pct(q.completeness.get("phone", 0.0))),
        Tile(_("With an email"), _pct(q.completeness.get("email", 0.0))),
        Tile(_("Invalid phones"), format_number(q.invalid_phones), hint=_("fail today's phone rules")),
        Tile(_("Invalid emails"), format_number(q.invalid_emails), hint=_("fail today's email rules")),
        Tile(_("Duplicate rate"), _pct(q.duplicate_rate), hint=_("same name and phone ending")),
    ]
    charts = []
    if q.contacts:
        charts.append(
            Chart(
                "quality-completeness",
                _("Completeness per field (%)"),
                "bar",
                [str(FIELD_LABELS.get(f, f)) for f in order],
                [{"label": _("Filled (%)"), "data": [round(q.completeness[f] * 100, 1) for f in order]}],
                {
                    "indexAxis": "y",
                    "scales": {"x": {"min": 0, "max": 100}},
                    "plugins": {"legend": {"display": False}},
                },
            )
        )
        with_phone = round(q.completeness.get("phone", 0.0) * q.contacts)
        with_email = round(q.completeness.get("email", 0.0) * q.contacts)
        charts.append(
            Chart(
                "quality-validity",
                _("Valid and invalid identities"),
                "bar",
                [_("Phones"), _("Emails")],
                [
                    {
                        "label": _("Invalid"),
                        "data": [q.invalid_phones, q.invalid_emails],
                        "backgroundColor": "#d63939",
                    },
                    {
                        "label": _("Contacts with one"),
                        "data": [with_phone, with_email],
                        "backgroundColor": "#206bc4",
                    },
                ],
            )
        )
        dup = round(q.duplicate_rate * q.contacts)
        charts.append(
            Chart(
                "quality-duplicates",
                _("Likely duplicates"),
                "doughnut",
                [_("Likely duplicates"), _("Others")],
                [{"data": [dup, max(q.contacts - dup, 0)], "backgroundColor": ["#f59f00", "#2fb344"]}],
            )
        )
    actions = []
    if pg.can("contacts:write"):
        actions.append(Action(_("Recompute now"), f"{BASE}/recompute", "post", primary=True))
    return pg.render(
        "contacts/quality.html",
        figures=q,
        computed_at=at,
        tiles=tiles,
        charts=charts,
        actions=actions,
        rows=[(str(FIELD_LABELS.get(f, f)), _pct(q.completeness[f])) for f in order],
    )


@router.post("/recompute")
async def recompute(pg: Writer) -> Response:
    await console_data.recompute_quality(pg.session)
    return pg.redirect(BASE, toast=_("Data-quality figures recomputed."))
