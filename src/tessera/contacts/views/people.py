"""Contacts console pages: the list (filters, saved views, bulk tag and owner, CSV export), the
contact 360 page with its tabs, create and edit forms, and the lifecycle-stage board.

Personal data is masked here exactly like the API masks it (``tessera.core.access.masking`` reads
the principal in scope); revealing a value is a POST that writes a ``pii.unmask`` audit row.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from markupsafe import Markup, escape
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.console import i18n
from tessera.console.components import (
    Action,
    BulkAction,
    Column,
    FilterControl,
    Form,
    Kanban,
    KanbanColumn,
    ListPage,
    ListResult,
    Tab,
    TimelineEntry,
    _l,
    apply_error,
    form_data,
    refill,
    schema_form,
    validate_form,
)
from tessera.console.i18n import _
from tessera.console.registry import NavItem, SearchHit, Tile, register_nav, register_search, register_tile
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.contacts.models import CONSENT_CHANNELS, LIFECYCLE_STAGES, Contact
from tessera.contacts.repository import CONTACT_FILTERS
from tessera.contacts.schemas import ContactCreate, ContactUpdate
from tessera.contacts.service import console_queries as q
from tessera.contacts.service import contacts as svc
from tessera.contacts.service import events as events_svc
from tessera.contacts.service import merge as merge_svc
from tessera.contacts.service import stewardship
from tessera.contacts.service import tags as tags_svc
from tessera.core.access.masking import mask
from tessera.core.access.principal import Principal
from tessera.core.http.errors import InvalidInput, TesseraError
from tessera.core.http.listing import ListQuery, apply_listing, page_of

add_template_dir(Path(__file__).resolve().parents[1] / "templates")

router = console_router("/contacts")
Read = Annotated[Page, Depends(page("contacts:read"))]
Write = Annotated[Page, Depends(page("contacts:write"))]
BASE = f"{PREFIX}/contacts"

register_nav(NavItem("contacts", "Contacts", BASE, "contacts:read", module="contacts", order=5))

STAGE_LABELS = {
    "subscriber": _l("Subscriber"),
    "lead": _l("Lead"),
    "qualified": _l("Qualified"),
    "customer": _l("Customer"),
    "churned": _l("Churned"),
}
CHANNEL_LABELS = {"sms": _l("SMS"), "email": _l("Email"), "wechat": _l("WeChat"), "voice": _l("Voice")}
CONSENT_LABELS = {"opted_in": _l("Opted in"), "opted_out": _l("Opted out"), "unknown": _l("Unknown")}
GENDER_LABELS = {"male": _l("Male"), "female": _l("Female"), "other": _l("Other"), "unknown": _l("Unknown")}
KIND_LABELS = {
    "phone": _l("Phone"),
    "email": _l("Email"),
    "wechat_openid": _l("WeChat OpenID"),
    "wechat_unionid": _l("WeChat UnionID"),
    "wecom_external_id": _l("WeCom external ID"),
    "device_id": _l("Device ID"),
}
TABS = ("profile", "identities", "consent", "tags", "timeline", "duplicates", "merges")


def stage_label(stage: str) -> str:
    return str(STAGE_LABELS.get(stage, stage))


# --- list -----------------------------------------------------------------------------------


async def contacts_list(pg: Page) -> ListPage:
    users = await q.user_options(pg.session)
    assert pg.principal
    write = pg.can("contacts:write")
    return ListPage(
        key="contacts",
        title=_("Contacts"),
        filterset=CONTACT_FILTERS,
        columns=[
            Column("name", _("Name"), sortable=True, link=True),
            Column("phone", _("Phone"), value=lambda r: mask("phone", r.phone), kind="mono"),
            Column("email", _("Email"), value=lambda r: mask("email", r.email), hide_on_phone=True),
            Column("city", _("City"), hide_on_phone=True),
            Column("lifecycle_stage", _("Stage"), value=lambda r: stage_label(r.lifecycle_stage)),
            Column("owner", _("Owner"), hide_on_phone=True),
            Column("account", _("Account"), hide_on_phone=True),
            Column("tags", _("Tags"), value=lambda r: ", ".join(r.tags), hide_on_phone=True),
            Column("created_at", _("Created"), sortable=True, kind="datetime", hide_on_phone=True),
        ],
        row_href=lambda r: f"{BASE}/{r.id}",
        bulk_actions=[
            BulkAction("tag", _("Add tag"), f"{BASE}/bulk-tag"),
            BulkAction("owner", _("Assign owner"), f"{BASE}/bulk-owner"),
        ]
        if write
        else [],
        options={
            "owner_id": users,
            "account_id": await q.account_options(pg.session, pg.principal),
            "lifecycle_stage": [(k, str(v)) for k, v in STAGE_LABELS.items()],
        },
        labels={
            "city": _("City"),
            "lifecycle_stage": _("Stage"),
            "source": _("Source"),
            "owner_id": _("Owner"),
            "account_id": _("Account"),
            "created_at": _("Created"),
            "name": _("Name"),
        },
        search_param="name__contains",
        actions=[(_("New contact"), f"{BASE}/new")] if write else [],
        empty_text=_("No contacts match these filters."),
    )


def _tag_param(pg: Page) -> uuid.UUID | None:
    raw = pg.request.query_params.get("tag")
    if not raw:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise InvalidInput(_("Choose a tag from the list."), field="tag") from None


async def _export(pg: Page, lst: ListPage, stmt: Any) -> Response:
    """Every matching contact as CSV (pages of 200, capped), masked for the caller."""
    from tessera.console.components import EXPORT_MAX_ROWS, RESERVED_PARAMS

    params = {
        k: v
        for k, v in pg.request.query_params.items()
        if k not in RESERVED_PARAMS and k not in ("cursor", "limit") and v != ""
    }
    lq = ListQuery.from_params(params, CONTACT_FILTERS)
    lq.limit = 200
    rows: list[Any] = []
    while len(rows) < EXPORT_MAX_ROWS:
        batch = list((await pg.session.execute(apply_listing(stmt, lq, CONTACT_FILTERS))).scalars())
        items, cursor = page_of(batch, lq, CONTACT_FILTERS)
        rows.extend(await q.contact_rows(pg.session, items))
        if cursor is None:
            break
        lq.cursor = cursor
    return lst.csv(ListResult(rows, None, lq, params, [], []))


@router.get("")
async def contacts(pg: Read) -> Response:
    assert pg.principal
    lst = await contacts_list(pg)
    stmt = q.visible_contacts(pg.principal)
    tag = _tag_param(pg)
    if tag is not None:
        stmt = q.with_tag(stmt, tag)
    if pg.request.query_params.get("format") == "csv":
        return await _export(pg, lst, stmt)
    result = await lst.run(pg, stmt)
    result.rows = await q.contact_rows(pg.session, result.rows)
    tags = await q.tag_options(pg.session)
    result.filters.append(FilterControl("tag", _("Tag"), "select", tags, str(tag or "")))
    return lst.respond(
        pg,
        result,
        template="contacts/people_list.html",
        tag_choices=tags,
        owner_choices=await q.user_options(pg.session),
    )


def _ids(raw: Any) -> list[uuid.UUID]:
    out = []
    for v in raw.getlist("ids"):
        try:
            out.append(uuid.UUID(str(v)))
        except ValueError:
            raise InvalidInput(_("A selected contact is not valid."), field="ids") from None
    return out


def _uuid_field(raw: Any, name: str, message: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw.get(name) or ""))
    except ValueError:
        raise InvalidInput(message, field=name) from None


@router.post("/bulk-tag")
async def bulk_tag(pg: Write, request: Request) -> Response:
    assert pg.principal
    raw = await request.form()
    ids = _ids(raw)
    tag_id = _uuid_field(raw, "tag_id", _("Choose the tag to add."))
    linked = await stewardship.tag_contacts(pg.session, ids, tag_id, pg.principal)
    return pg.redirect(BASE, toast=_("Tag added to %(n)s contacts.") % {"n": linked})


@router.post("/bulk-owner")
async def bulk_owner(pg: Write, request: Request) -> Response:
    assert pg.principal
    raw = await request.form()
    ids = _ids(raw)
    owner_id = _uuid_field(raw, "owner_id", _("Choose the new owner."))
    n = await stewardship.assign_owner(pg.session, ids, owner_id, pg.principal)
    return pg.redirect(BASE, toast=_("%(n)s contacts have a new owner.") % {"n": n})


# --- search and home tile -------------------------------------------------------------------


@register_search
async def search_contacts(session: AsyncSession, principal: Principal, text: str) -> list[SearchHit]:
    if not principal.has("contacts:read"):
        return []
    rows = await q.search_contacts(session, principal, text, await svc.tenant_region(session))
    return [
        SearchHit(
            r.name,
            f"{BASE}/{r.id}",
            _("Contact"),
            " · ".join(x for x in (mask("phone", r.phone), r.city, stage_label(r.lifecycle_stage)) if x),
        )
        for r in rows
    ]


@register_tile
async def contacts_tile(session: AsyncSession, principal: Principal) -> Tile | None:
    if not principal.has("contacts:read"):
        return None
    counts = await q.stage_counts(session, principal)
    total = sum(counts.values())
    hint = " · ".join(
        f"{stage_label(s)} {i18n.format_number(counts[s])}" for s in ("lead", "qualified", "customer")
    )
    return Tile(_("Contacts"), i18n.format_number(total), BASE, hint=hint, order=15)


# --- create and edit forms ------------------------------------------------------------------

FORM_FIELDS = [
    "name",
    "phones",
    "emails",
    "given_name",
    "family_name",
    "gender",
    "birthday",
    "city",
    "address",
    "language",
    "lifecycle_stage",
    "source",
    "account_id",
    "owner_id",
]
PII_FIELDS = ("phones", "emails", "address", "birthday")
_SPLIT = re.compile(r"[,;\n，；]+")


def _labels() -> dict[str, str]:
    return {
        "name": _("Name"),
        "phones": _("Phones"),
        "emails": _("Emails"),
        "given_name": _("Given name"),
        "family_name": _("Family name"),
        "gender": _("Gender"),
        "birthday": _("Birthday"),
        "city": _("City"),
        "address": _("Address"),
        "language": _("Language"),
        "lifecycle_stage": _("Stage"),
        "source": _("Source"),
        "account_id": _("Account"),
        "owner_id": _("Owner"),
    }


def _fields_for(pg: Page) -> list[str]:
    """Who cannot see personal data cannot edit it either (they would only see masks)."""
    see = pg.principal is not None and pg.principal.can_see_pii
    return [f for f in FORM_FIELDS if see or f not in PII_FIELDS]


async def contact_form(pg: Page, schema: type[Any], values: dict[str, Any] | None, only: list[str]) -> Form:
    assert pg.principal
    vals = dict(values or {})
    for k in ("phones", "emails"):
        if isinstance(vals.get(k), list):
            vals[k] = ", ".join(vals[k])
    return schema_form(
        schema,
        vals,
        only=only,
        labels=_labels(),
        options={
            "gender": [(k, str(v)) for k, v in GENDER_LABELS.items()],
            "lifecycle_stage": [(k, str(v)) for k, v in STAGE_LABELS.items()],
            "account_id": await q.account_options(pg.session, pg.principal),
            "owner_id": await q.user_options(pg.session),
        },
        kinds={"phones": "text", "emails": "text"},
        help={
            "phones": _("Separate several with commas; the first is the primary phone."),
            "emails": _("Separate several with commas; the first is the primary email."),
        },
    )


def _parse(raw: Any, schema: type[Any], only: list[str], *, clear: bool) -> dict[str, Any]:
    data = form_data(raw, schema, only=only)
    for k in ("phones", "emails"):
        if k in only:
            joined = ",".join(str(v) for v in data.get(k, []))
            data[k] = [p.strip() for p in _SPLIT.split(joined) if p.strip()]
    if clear:  # an emptied input clears the value on edit
        for k in only:
            if k not in data and k != "name":
                data[k] = None
    return data


def _apply(form: Form, exc: TesseraError) -> Form:
    """Put a service error on its field (``phones[1]`` → ``phones``); link an existing contact."""
    if exc.field:
        exc.field = exc.field.split("[", 1)[0].split(".", 1)[0]
    apply_error(form, exc)
    existing = exc.details.get("existing_id") if exc.details else None
    if existing:
        for f in form.fields:
            if f.name == exc.field:
                f.help = Markup('<a href="{}">{}</a>').format(
                    f"{BASE}/{escape(str(existing))}", _("Open the existing contact")
                )
    return form


@router.get("/new")
async def new_contact(pg: Write) -> Response:
    form = await contact_form(pg, ContactCreate, {"lifecycle_stage": "lead"}, _fields_for(pg))
    return pg.render("contacts/contact_form.html", form=form, contact=None)


@router.post("/new")
async def create_contact(pg: Write, request: Request) -> Response:
    assert pg.principal
    only = _fields_for(pg)
    data = _parse(await request.form(), ContactCreate, only, clear=False)
    form = await contact_form(pg, ContactCreate, None, only)
    body = validate_form(ContactCreate, data, form)
    if isinstance(body, ContactCreate):
        if body.owner_id is None and pg.principal.user_id is not None:
            body.owner_id = pg.principal.user_id
        try:
            async with pg.session.begin_nested():
                contact, _created = await svc.create_contact(pg.session, body)
            return pg.redirect(f"{BASE}/{contact.id}", toast=_("Contact created."))
        except TesseraError as exc:
            _apply(form, exc)
    return pg.render(
        "contacts/contact_form.html", form=refill(form, _display(data)), contact=None, status_code=422
    )


def _display(data: dict[str, Any]) -> dict[str, Any]:
    return {k: (", ".join(v) if isinstance(v, list) else ("" if v is None else v)) for k, v in data.items()}


async def _edit_values(pg: Page, contact: Contact) -> dict[str, Any]:
    values: dict[str, Any] = {f: getattr(contact, f, None) for f in FORM_FIELDS if hasattr(contact, f)}
    values["account_id"] = str(contact.account_id or "")
    values["owner_id"] = str(contact.owner_id or "")
    idents = await q.identity_values(pg.session, contact.id, ("phone", "email"))
    values["phones"] = [i.value for i in idents if i.kind == "phone"]
    values["emails"] = [i.value for i in idents if i.kind == "email"]
    return values


@router.get("/{contact_id:uuid}/edit")
async def edit_contact(contact_id: uuid.UUID, pg: Write) -> Response:
    contact = await svc.get_contact(pg.session, contact_id, pg.principal)
    form = await contact_form(pg, ContactUpdate, await _edit_values(pg, contact), _fields_for(pg))
    return pg.render("contacts/contact_form.html", form=form, contact=contact)


@router.post("/{contact_id:uuid}/edit")
async def update_contact(contact_id: uuid.UUID, pg: Write, request: Request) -> Response:
    found = await svc.get_contact(pg.session, contact_id, pg.principal)
    # A plain copy: a rolled-back savepoint expires the ORM object before the page renders.
    contact = SimpleNamespace(id=found.id, name=found.name)
    only = _fields_for(pg)
    data = _parse(await request.form(), ContactUpdate, only, clear=True)
    form = await contact_form(pg, ContactUpdate, None, only)
    for f in form.fields:
        f.required = f.name == "name"
    if not data.get("name"):
        form.errors["name"] = _("This field is required.")
        apply_error(form, InvalidInput(_("This field is required."), field="name"))
    else:
        body = validate_form(ContactUpdate, data, form)
        if isinstance(body, ContactUpdate):
            try:
                async with pg.session.begin_nested():
                    await svc.update_contact(pg.session, contact.id, body, pg.principal)
                return pg.redirect(f"{BASE}/{contact.id}", toast=_("Changes saved."))
            except TesseraError as exc:
                _apply(form, exc)
    return pg.render(
        "contacts/contact_form.html", form=refill(form, _display(data)), contact=contact, status_code=422
    )


# --- lifecycle board ------------------------------------------------------------------------


@router.get("/board")
async def stage_board(pg: Read) -> Response:
    assert pg.principal
    mine = pg.request.query_params.get("mine") == "1"
    cols = await q.board(pg.session, pg.principal, owner_id=pg.principal.user_id if mine else None)
    counts = None
    if not mine:
        counts = [(stage_label(s), n) for s, n in (await q.stage_counts(pg.session, pg.principal)).items()]
    board = Kanban(
        "contacts-stages",
        [
            KanbanColumn(
                stage,
                stage_label(stage),
                [
                    {
                        "id": str(r.id),
                        "title": r.name,
                        "subtitle": " · ".join(x for x in (r.account, r.owner) if x),
                        "href": f"{BASE}/{r.id}",
                    }
                    for r in cols[stage]
                ],
            )
            for stage in LIFECYCLE_STAGES
        ],
        f"{BASE}/board/move",
    )
    return pg.render(
        "contacts/board.html", board=board, counts=counts, mine=mine, can_move=pg.can("contacts:write")
    )


@router.post("/board/move")
async def board_move(pg: Write, request: Request) -> Response:
    assert pg.principal
    raw = await request.form()
    card = _uuid_field(raw, "card", _("The card is not a contact."))
    stage = str(raw.get("column") or "")
    contact = await stewardship.set_stage(pg.session, card, stage, pg.principal)
    if pg.request.headers.get("hx-request") == "true":
        return Response(status_code=204)
    return pg.redirect(
        f"{BASE}/board",
        toast=_("%(name)s moved to %(stage)s.") % {"name": contact.name, "stage": stage_label(stage)},
    )


# --- the 360 page ---------------------------------------------------------------------------


def _tabs(cid: uuid.UUID, counts: dict[str, int | None]) -> list[Tab]:
    base = f"{BASE}/{cid}"
    labels = {
        "profile": _("Profile"),
        "identities": _("Identities"),
        "consent": _("Consent"),
        "tags": _("Tags"),
        "timeline": _("Timeline"),
        "duplicates": _("Duplicates"),
        "merges": _("Merge history"),
    }
    return [Tab(k, labels[k], base if k == "profile" else f"{base}?tab={k}", counts.get(k)) for k in TABS]


async def _contact_page(
    pg: Page, contact_id: uuid.UUID, tab: str, *, revealed: dict[str, Any] | None = None, status: int = 200
) -> Response:
    assert pg.principal
    contact = await svc.get_contact(pg.session, contact_id, pg.principal)
    prof = await q.profile(pg.session, contact)
    write = pg.can("contacts:write")
    base = f"{BASE}/{contact.id}"
    actions: list[Action] = []
    if write:
        actions = [
            Action(_("Edit"), f"{base}/edit", primary=True),
            Action(_("Add tag"), f"{base}?tab=tags"),
            Action(_("Change owner"), f"{base}#owner"),
            Action(_("Merge"), f"{base}?tab=duplicates"),
        ]
    see = pg.principal.can_see_pii
    can_unmask = not see and pg.can("pii:unmask")
    revealed = revealed or {}
    phones = [i for i in prof.identities if i.kind == "phone"]
    emails = [i for i in prof.identities if i.kind == "email"]

    def shown(kind: str, value: str | None, key: str) -> str | None:
        if value is None:
            return None
        if key in revealed:
            return value
        return mask(kind, value) if kind in ("phone", "email", "address") else value

    ctx: dict[str, Any] = {
        "phones": [(shown("phone", i.value, "phone"), i.primary) for i in phones],
        "emails": [(shown("email", i.value, "email"), i.primary) for i in emails],
        "others": [i for i in prof.identities if i.kind not in ("phone", "email")],
        "address": shown("address", contact.address, "address"),
        "birthday": contact.birthday,
    }
    timeline: list[TimelineEntry] = []
    suggestions: list[tuple[Any, Any]] = []
    if tab == "timeline":
        for item in await events_svc.timeline(pg.session, contact.id, 100, pg.principal):
            detail = ", ".join(f"{k}: {v}" for k, v in (item.data.get("properties") or {}).items())
            timeline.append(TimelineEntry(item.at, _(item.title), item.source, detail))
    if tab == "duplicates":
        found = await merge_svc.suggest_duplicates(pg.session, contact.id, principal=pg.principal)
        # The suggestion service scores the whole tenant; show only contacts this caller may see.
        seen = await q.visible_ids(pg.session, pg.principal, [c.id for c, _s in found])
        for c, s in found:
            if c.id in seen and not await q.is_dismissed(pg.session, contact.id, c.id):
                suggestions.append((c, s))
    tag_choices = []
    if tab == "tags" and write:
        have = {str(t) for t, _n in prof.tags}
        tag_choices = [o for o in await q.tag_options(pg.session) if o[0] not in have]
    owners = await q.user_options(pg.session) if write and tab == "profile" else []
    counts: dict[str, int | None] = {
        "identities": len(prof.identities),
        "tags": len(prof.tags),
        "merges": len(prof.merges),
    }
    return pg.render(
        "contacts/contact.html",
        status_code=status,
        contact=contact,
        prof=prof,
        tab=tab,
        tabs=_tabs(contact.id, counts),
        actions=actions,
        stage=stage_label(contact.lifecycle_stage),
        gender=str(GENDER_LABELS.get(contact.gender or "", contact.gender or "")) or None,
        can_unmask=can_unmask and not revealed,
        revealed=bool(revealed),
        write=write,
        timeline=timeline,
        suggestions=suggestions,
        tag_choices=tag_choices,
        owners=owners,
        channels=[(c, str(CHANNEL_LABELS[c])) for c in CONSENT_CHANNELS],
        consent_labels={k: str(v) for k, v in CONSENT_LABELS.items()},
        kind_labels={k: str(v) for k, v in KIND_LABELS.items()},
        **ctx,
    )


@router.get("/{contact_id:uuid}")
async def contact_detail(contact_id: uuid.UUID, pg: Read, tab: str = "profile") -> Response:
    return await _contact_page(pg, contact_id, tab if tab in TABS else "profile")


@router.post("/{contact_id:uuid}/unmask")
async def unmask(contact_id: uuid.UUID, pg: Read, request: Request) -> Response:
    """Reveal the contact's personal data once, in this response only (audited)."""
    assert pg.principal
    raw = await request.form()
    tab = str(raw.get("tab") or "profile")
    tab = tab if tab in ("profile", "identities") else "profile"
    revealed = await stewardship.unmask_contact(
        pg.session, contact_id, pg.principal, ["phone", "email", "address", "birthday"]
    )
    return await _contact_page(pg, contact_id, tab, revealed=revealed)


@router.post("/{contact_id:uuid}/tags")
async def add_tag(contact_id: uuid.UUID, pg: Write, request: Request) -> Response:
    assert pg.principal
    raw = await request.form()
    tag_id = _uuid_field(raw, "tag_id", _("Choose the tag to add."))
    await stewardship.tag_contacts(pg.session, [contact_id], tag_id, pg.principal)
    return pg.redirect(f"{BASE}/{contact_id}?tab=tags", toast=_("Tag added."))


@router.post("/{contact_id:uuid}/tags/{tag_id:uuid}/remove")
async def remove_tag(contact_id: uuid.UUID, tag_id: uuid.UUID, pg: Write) -> Response:
    await svc.get_contact(pg.session, contact_id, pg.principal)
    await tags_svc.untag(pg.session, contact_id, tag_id)
    return pg.redirect(f"{BASE}/{contact_id}?tab=tags", toast=_("Tag removed."))


@router.post("/{contact_id:uuid}/owner")
async def change_owner(contact_id: uuid.UUID, pg: Write, request: Request) -> Response:
    assert pg.principal
    raw = await request.form()
    owner_id = _uuid_field(raw, "owner_id", _("Choose the new owner."))
    await svc.get_contact(pg.session, contact_id, pg.principal)
    await stewardship.assign_owner(pg.session, [contact_id], owner_id, pg.principal)
    # The new owner may take the contact out of the caller's sight.
    try:
        await svc.get_contact(pg.session, contact_id, pg.principal)
    except TesseraError:
        return pg.redirect(BASE, toast=_("Owner changed."))
    return pg.redirect(f"{BASE}/{contact_id}", toast=_("Owner changed."))


@router.post("/{contact_id:uuid}/consent")
async def change_consent(contact_id: uuid.UUID, pg: Write, request: Request) -> Response:
    raw = await request.form()
    channel = str(raw.get("channel") or "")
    status = str(raw.get("status") or "")
    if channel not in CONSENT_CHANNELS:
        raise InvalidInput(_("Choose a channel from the list."), field="channel")
    if status not in CONSENT_LABELS:
        raise InvalidInput(_("Choose a consent status from the list."), field="status")
    await svc.get_contact(pg.session, contact_id, pg.principal)
    await svc.set_consent(pg.session, contact_id, channel, status, "console")
    return pg.redirect(f"{BASE}/{contact_id}?tab=consent", toast=_("Consent updated."))
