"""Duplicates queue (likely pairs with score and reasons, dismiss) and the merge screen (choose
the survivor and, per field, whose value it keeps; then the merge service moves everything)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.contacts.models import Contact
from tessera.contacts.service import console_queries as q
from tessera.contacts.service import contacts as svc
from tessera.contacts.service import merge as merge_svc
from tessera.contacts.service import stewardship
from tessera.contacts.views.people import GENDER_LABELS, stage_label
from tessera.core.access.masking import mask
from tessera.core.http.errors import InvalidInput

add_template_dir(Path(__file__).resolve().parents[1] / "templates")

router = console_router("/contacts/duplicates")
Read = Annotated[Page, Depends(page("contacts:read"))]
Write = Annotated[Page, Depends(page("contacts:write"))]
BASE = f"{PREFIX}/contacts/duplicates"

register_nav(NavItem("contacts.duplicates", "Duplicates", BASE, "contacts:read", module="contacts", order=8))


def _labels() -> dict[str, str]:
    return {
        "name": _("Name"),
        "given_name": _("Given name"),
        "family_name": _("Family name"),
        "gender": _("Gender"),
        "birthday": _("Birthday"),
        "address": _("Address"),
        "city": _("City"),
        "language": _("Language"),
        "account_id": _("Account"),
        "owner_id": _("Owner"),
        "source": _("Source"),
        "lifecycle_stage": _("Stage"),
        "attributes": _("Custom attributes"),
    }


@router.get("")
async def queue(pg: Read, min_score: int = 60, limit: int = 50) -> Response:
    assert pg.principal
    if not 0 <= min_score <= 100:
        raise InvalidInput(_("The minimum score must be between 0 and 100."), field="min_score")
    if not 1 <= limit <= 200:
        raise InvalidInput(_("The number of pairs must be between 1 and 200."), field="limit")
    pairs = await q.duplicate_queue(pg.session, pg.principal, min_score=min_score, limit=limit)
    more = f"?min_score={min_score}&limit={min(200, limit + 50)}" if len(pairs) == limit < 200 else None
    return pg.render(
        "contacts/duplicates.html",
        pairs=pairs,
        more=more,
        min_score=min_score,
        write=pg.can("contacts:write"),
        phone=lambda v: mask("phone", v),
    )


def _uuid(raw: Any, name: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw.get(name) or ""))
    except ValueError:
        raise InvalidInput(_("Choose a contact from the list."), field=name) from None


@router.post("/dismiss")
async def dismiss(pg: Write, request: Request) -> Response:
    assert pg.principal
    raw = await request.form()
    a, b = _uuid(raw, "a"), _uuid(raw, "b")
    await stewardship.dismiss_duplicate(pg.session, a, b, pg.principal)
    target = f"{PREFIX}/contacts/{a}?tab=duplicates" if raw.get("next") == "contact" else BASE
    return pg.redirect(target, toast=_("Marked as not a duplicate."))


async def _display(pg: Page, c: Contact) -> dict[str, str]:
    owners = await q.user_names(pg.session, [c.owner_id])
    accounts = await q.account_names(pg.session, [c.account_id])
    out: dict[str, str] = {}
    for f in merge_svc.MERGEABLE:
        v = getattr(c, f)
        if f == "owner_id":
            v = owners.get(v) if v else None
        elif f == "account_id":
            v = accounts.get(v) if v else None
        elif f == "lifecycle_stage":
            v = stage_label(v)
        elif f == "gender" and v:
            v = str(GENDER_LABELS.get(v, v))
        elif f == "address":
            v = mask("address", v)
        out[f] = "" if v is None else str(v)
    out["attributes"] = ", ".join(f"{k}: {v}" for k, v in sorted((c.attributes or {}).items()))
    return out


async def _merge_page(pg: Page, a_id: uuid.UUID, b_id: uuid.UUID, status: int = 200) -> Response:
    assert pg.principal
    if a_id == b_id:
        raise InvalidInput(_("Choose two different contacts."), field="b")
    a = await svc.get_contact(pg.session, a_id, pg.principal)
    b = await svc.get_contact(pg.session, b_id, pg.principal)
    rows = await q.contact_rows(pg.session, [a, b])
    da, db = await _display(pg, a), await _display(pg, b)
    labels = _labels()
    fields = [(f, labels[f], da[f], db[f]) for f in (*merge_svc.MERGEABLE, "attributes")]
    return pg.render(
        "contacts/merge.html",
        status_code=status,
        a=rows[0],
        b=rows[1],
        fields=fields,
        phone=lambda v: mask("phone", v),
        email=lambda v: mask("email", v),
    )


@router.get("/merge")
async def merge_screen(pg: Write, request: Request) -> Response:
    return await _merge_page(pg, _uuid(request.query_params, "a"), _uuid(request.query_params, "b"))


@router.post("/merge")
async def merge(pg: Write, request: Request) -> Response:
    assert pg.principal
    raw = await request.form()
    a, b = _uuid(raw, "a"), _uuid(raw, "b")
    survivor = _uuid(raw, "survivor")
    if survivor not in (a, b):
        raise InvalidInput(_("The contact to keep must be one of the two."), field="survivor")
    loser = b if survivor == a else a
    winners: dict[str, str] = {}
    for f in (*merge_svc.MERGEABLE, "attributes"):
        choice = raw.get(f"winner_{f}")
        if choice in (None, ""):
            continue
        if choice not in ("a", "b"):
            raise InvalidInput(_("Choose whose value to keep."), field=f"winner_{f}")
        chosen = a if choice == "a" else b
        winners[f] = "survivor" if chosen == survivor else "loser"
    await merge_svc.merge_contacts(pg.session, survivor, loser, winners, pg.principal)
    return pg.redirect(f"{PREFIX}/contacts/{survivor}?tab=merges", toast=_("Contacts merged."))
