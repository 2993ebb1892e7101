"""Accounts (companies) console pages: list with filters, create and edit, detail with the
account's contacts and child accounts."""

from __future__ import annotations

import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from tessera.console.components import (
    Action,
    Column,
    Form,
    ListPage,
    Tab,
    apply_error,
    export_all,
    form_data,
    refill,
    schema_form,
    validate_form,
)
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.contacts.api import ACCOUNT_FILTERS
from tessera.contacts.models import Account
from tessera.contacts.schemas import AccountCreate, AccountUpdate
from tessera.contacts.service import accounts as accounts_svc
from tessera.contacts.service import console_queries as q
from tessera.core.http.errors import InvalidInput, TesseraError

add_template_dir(Path(__file__).resolve().parents[1] / "templates")

router = console_router("/contacts/accounts")
Read = Annotated[Page, Depends(page("contacts:read"))]
Write = Annotated[Page, Depends(page("contacts:write"))]
BASE = f"{PREFIX}/contacts/accounts"

register_nav(NavItem("contacts.accounts", "Accounts", BASE, "contacts:read", module="contacts", order=6))

FIELDS = ["name", "industry", "size", "region", "parent_id", "owner_id"]


async def accounts_list(pg: Page) -> ListPage:
    assert pg.principal
    users = await q.user_options(pg.session)
    owners = dict(users)
    parents = await q.account_options(pg.session, pg.principal)
    parent_names = dict(parents)
    return ListPage(
        key="contacts.accounts",
        title=_("Accounts"),
        filterset=ACCOUNT_FILTERS,
        columns=[
            Column("name", _("Name"), sortable=True, link=True),
            Column("industry", _("Industry")),
            Column("region", _("Region"), hide_on_phone=True),
            Column("size", _("Size"), hide_on_phone=True),
            Column("owner_id", _("Owner"), value=lambda a: owners.get(str(a.owner_id)), hide_on_phone=True),
            Column(
                "parent_id",
                _("Parent account"),
                value=lambda a: parent_names.get(str(a.parent_id)),
                hide_on_phone=True,
            ),
            Column("created_at", _("Created"), sortable=True, kind="datetime", hide_on_phone=True),
        ],
        row_href=lambda a: f"{BASE}/{a.id}",
        options={"owner_id": users, "parent_id": parents},
        labels={
            "name": _("Name"),
            "industry": _("Industry"),
            "region": _("Region"),
            "owner_id": _("Owner"),
            "parent_id": _("Parent account"),
        },
        search_param="name__contains",
        actions=[(_("New account"), f"{BASE}/new")] if pg.can("contacts:write") else [],
        empty_text=_("No accounts match these filters."),
    )


@router.get("")
async def accounts(pg: Read) -> Response:
    assert pg.principal
    lst = await accounts_list(pg)
    stmt = q.visible_accounts(pg.principal)
    if pg.request.query_params.get("format") == "csv":
        return await export_all(pg, lst, stmt)
    return lst.respond(pg, await lst.run(pg, stmt))


async def account_form(
    pg: Page, schema: type[Any], values: dict[str, Any] | None, self_id: uuid.UUID | None
) -> Form:
    assert pg.principal
    parents = [o for o in await q.account_options(pg.session, pg.principal) if o[0] != str(self_id)]
    return schema_form(
        schema,
        values,
        only=FIELDS,
        labels={
            "name": _("Name"),
            "industry": _("Industry"),
            "size": _("Size"),
            "region": _("Region"),
            "parent_id": _("Parent account"),
            "owner_id": _("Owner"),
        },
        options={"parent_id": parents, "owner_id": await q.user_options(pg.session)},
        help={"size": _("For example 1-10, 11-50, 51-200, 201-1000 or 1000+.")},
    )


@router.get("/new")
async def new_account(pg: Write) -> Response:
    return pg.render(
        "contacts/account_form.html", form=await account_form(pg, AccountCreate, None, None), account=None
    )


@router.post("/new")
async def create_account(pg: Write, request: Request) -> Response:
    assert pg.principal
    data = form_data(await request.form(), AccountCreate, only=FIELDS)
    form = await account_form(pg, AccountCreate, None, None)
    body = validate_form(AccountCreate, data, form)
    if isinstance(body, AccountCreate):
        if body.owner_id is None and pg.principal.user_id is not None:
            body.owner_id = pg.principal.user_id
        try:
            async with pg.session.begin_nested():
                acc = await accounts_svc.create_account(pg.session, body)
            return pg.redirect(f"{BASE}/{acc.id}", toast=_("Account created."))
        except TesseraError as exc:
            apply_error(form, exc)
    return pg.render("contacts/account_form.html", form=refill(form, data), account=None, status_code=422)


def _values(acc: Account) -> dict[str, Any]:
    return {f: ("" if getattr(acc, f) is None else str(getattr(acc, f))) for f in FIELDS}


@router.get("/{account_id:uuid}/edit")
async def edit_account(account_id: uuid.UUID, pg: Write) -> Response:
    acc = await accounts_svc.get_account(pg.session, account_id, pg.principal)
    form = await account_form(pg, AccountUpdate, _values(acc), acc.id)
    return pg.render("contacts/account_form.html", form=form, account=acc)


@router.post("/{account_id:uuid}/edit")
async def update_account(account_id: uuid.UUID, pg: Write, request: Request) -> Response:
    found = await accounts_svc.get_account(pg.session, account_id, pg.principal)
    # A plain copy: a rolled-back savepoint expires the ORM object before the page renders.
    acc = SimpleNamespace(id=found.id, name=found.name)
    data = form_data(await request.form(), AccountUpdate, only=FIELDS)
    for k in FIELDS:  # an emptied input clears the value
        if k not in data and k != "name":
            data[k] = None
    form = await account_form(pg, AccountUpdate, None, acc.id)
    if not data.get("name"):
        apply_error(form, InvalidInput(_("This field is required."), field="name"))
    else:
        body = validate_form(AccountUpdate, data, form)
        if isinstance(body, AccountUpdate):
            try:
                async with pg.session.begin_nested():
                    await accounts_svc.update_account(pg.session, acc.id, body, pg.principal)
                return pg.redirect(f"{BASE}/{acc.id}", toast=_("Changes saved."))
            except TesseraError as exc:
                apply_error(form, exc)
    shown = {k: ("" if v is None else v) for k, v in data.items()}
    return pg.render("contacts/account_form.html", form=refill(form, shown), account=acc, status_code=422)


@router.get("/{account_id:uuid}")
async def account_detail(account_id: uuid.UUID, pg: Read, tab: str = "overview") -> Response:
    assert pg.principal
    acc = await accounts_svc.get_account(pg.session, account_id, pg.principal)
    tab = tab if tab in ("overview", "contacts", "children") else "overview"
    contacts = await q.account_contacts(pg.session, pg.principal, acc.id)
    children = await q.child_accounts(pg.session, pg.principal, acc.id)
    counts = await q.contact_counts_by_account(pg.session, [c.id for c in children])
    names = await q.user_names(pg.session, [acc.owner_id])
    parent = (
        (await q.account_names(pg.session, [acc.parent_id])).get(acc.parent_id) if acc.parent_id else None
    )
    base = f"{BASE}/{acc.id}"
    actions = [Action(_("Edit"), f"{base}/edit", primary=True)] if pg.can("contacts:write") else []
    tabs = [
        Tab("overview", _("Overview"), base),
        Tab("contacts", _("Contacts"), f"{base}?tab=contacts", len(contacts)),
        Tab("children", _("Child accounts"), f"{base}?tab=children", len(children)),
    ]
    return pg.render(
        "contacts/account.html",
        account=acc,
        tab=tab,
        tabs=tabs,
        actions=actions,
        owner=names.get(acc.owner_id) if acc.owner_id else None,
        parent=parent,
        contacts=contacts,
        children=children,
        child_counts=counts,
    )
