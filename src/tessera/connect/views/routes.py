"""Route tables of SMS channels (message class or any, carrier or the default "*", number prefix
or any → ordered links with weights; matching in :mod:`tessera.connect.routing`), the
number-portability table (CSV import) and a lookup tester: a number and a message class → the
carrier it is routed as and the links the dispatcher would try, in order.

The number typed into the tester is posted, never put in a URL.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from tessera.connect.errors import ChannelNotFound, RouteNotFound
from tessera.connect.models import MESSAGE_CLASSES, Channel, RouteEntry
from tessera.connect.schemas import RouteIn
from tessera.connect.service import channels as service
from tessera.connect.service import console_queries as q
from tessera.console import i18n
from tessera.console.components import Form, FormField, _l, apply_error
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.core.http.errors import InvalidInput, TesseraError

add_template_dir(Path(__file__).resolve().parents[1] / "templates")
router = console_router("/connect/routes")
BASE = f"{PREFIX}/connect/routes"
Manager = Annotated[Page, Depends(page("channels:manage"))]
MAX_UPLOAD = 2 * 1024 * 1024

register_nav(NavItem("connect.routes", "Routes", BASE, "channels:manage", module="connect", order=43))

CLASS_LABELS = {
    "verification": _l("Verification"),
    "notification": _l("Notification"),
    "marketing": _l("Marketing"),
}
FIELDS = ("message_class", "carrier", "prefix", "link_id", "priority", "weight")


def _class_options() -> list[tuple[str, str]]:
    return [("", _("Any class")), *((c, str(CLASS_LABELS[c])) for c in MESSAGE_CLASSES)]


def _route_form(links: list[tuple[str, str]], values: dict[str, Any] | None = None) -> Form:
    v = values or {}
    return Form(
        [
            FormField(
                "message_class",
                _("Message class"),
                "select",
                v.get("message_class") or "",
                options=_class_options(),
                help=_("A route for one class is tried before the routes for any class."),
            ),
            FormField(
                "carrier",
                _("Carrier"),
                value=v.get("carrier", "*"),
                required=True,
                maxlength=64,
                help=_(
                    "As detected from the number, e.g. China Mobile; * is the default route for any carrier."
                ),
            ),
            FormField(
                "prefix",
                _("Number prefix"),
                value=v.get("prefix") or "",
                maxlength=16,
                help=_("E.164, e.g. +86 or +8613; the longest matching prefix wins. Empty: any number."),
            ),
            FormField("link_id", _("Link"), "select", v.get("link_id", ""), required=True, options=links),
            FormField(
                "priority",
                _("Priority"),
                "number",
                v.get("priority", 0),
                help=_("Lower is tried first; the next priority is the failover."),
            ),
            FormField(
                "weight",
                _("Weight"),
                "number",
                v.get("weight", 100),
                help=_("Links of the same priority share the traffic by weight."),
            ),
        ]
    )


def _errors(form: Form, exc: ValidationError) -> None:
    for e in exc.errors():
        loc = [str(p) for p in e.get("loc", ())]
        name = loc[0] if loc else ""
        name = "message_class" if name == "class" else name
        msg = {
            "missing": _("This field is required."),
            "uuid_parsing": _("Choose a value from the list."),
            "int_parsing": _("Enter a whole number."),
            "greater_than_equal": _("This number is too small."),
            "less_than_equal": _("This number is too large."),
            "string_too_short": _("This is too short."),
            "string_too_long": _("This is too long."),
            "literal_error": _("Choose a value from the list."),
            "string_pattern_mismatch": _("Write a prefix like +86 or +8613."),
        }.get(str(e.get("type")), _("This value is not valid."))
        form.errors.setdefault(name, msg)
    for f in form.fields:
        f.error = form.errors.get(f.name)


def _read(raw: Any) -> dict[str, str]:
    return {k: str(raw.get(k) or "").strip() for k in FIELDS}


def _validate(data: dict[str, str], form: Form) -> RouteIn | None:
    try:
        return RouteIn.model_validate({k: v for k, v in data.items() if v != "" or k == "carrier"})
    except ValidationError as exc:
        _errors(form, exc)
        return None


async def _sms_channels(pg: Page) -> list[Channel]:
    return [c for c in await service.list_channels(pg.session) if c.kind == "sms"]


def _pick(chans: list[Channel], raw: str | None) -> Channel | None:
    if raw:
        for c in chans:
            if str(c.id) == raw:
                return c
        raise ChannelNotFound()  # a foreign channel is a missing one
    return chans[0] if chans else None


RouteKey = tuple[str | None, str, str | None]  # message class, carrier, prefix


def _groups(
    routes: list[RouteEntry],
) -> list[tuple[RouteKey, list[tuple[int, list[tuple[RouteEntry, float]]]]]]:
    """(class, carrier, prefix) → priority → [(entry, share of the priority's weight)], in the
    order the dispatcher prefers them: class-specific first, then carrier, then the longest
    prefix; the default (any class, "*", any number) last."""
    out: dict[RouteKey, dict[int, list[RouteEntry]]] = {}
    for r in routes:
        out.setdefault((r.message_class, r.carrier, r.prefix), {}).setdefault(r.priority, []).append(r)

    def rank(k: RouteKey) -> tuple[int, int, int, str, str, str]:
        cls, carrier, prefix = k
        return (cls is None, carrier == "*", -len(prefix or ""), cls or "", carrier, prefix or "")

    result = []
    for key in sorted(out, key=rank):
        prios = []
        for prio in sorted(out[key]):
            group = sorted(out[key][prio], key=lambda r: -r.weight)
            total = sum(r.weight for r in group) or 1
            prios.append((prio, [(r, r.weight / total) for r in group]))
        result.append((key, prios))
    return result


async def _page(
    pg: Page,
    channel_raw: str | None,
    *,
    form: Form | None = None,
    upload_error: str | None = None,
    lookup: q.Lookup | None = None,
    lookup_error: str | None = None,
    lookup_class: str = "",
    status: int = 200,
) -> Response:
    chans = await _sms_channels(pg)
    ch = _pick(chans, channel_raw)
    routes: list[RouteEntry] = []
    links: list[tuple[str, str]] = []
    names: dict[uuid.UUID, str] = {}
    if ch is not None:
        routes = await service.list_routes(pg.session, ch.id)
        chan_links = await service.list_links(pg.session, ch.id)
        links = [(str(x.id), x.name) for x in chan_links]
        names = {x.id: x.name for x in chan_links}
    return pg.render(
        "connect/route_list.html",
        status_code=status,
        chans=chans,
        ch=ch,
        groups=_groups(routes),
        names=names,
        form=form or (_route_form(links) if ch else None),
        ported=await q.ported_count(pg.session),
        upload_error=upload_error,
        lookup=lookup,
        lookup_error=lookup_error,
        class_labels=CLASS_LABELS,
        class_options=_class_options(),
        lookup_class=lookup_class,
        pct=lambda x: i18n.format_number(round(x * 100)) + "%",
    )


@router.get("")
async def routes(pg: Manager, channel: str | None = None) -> Response:
    return await _page(pg, channel)


@router.post("/new")
async def route_create(pg: Manager, request: Request) -> Response:
    raw = await request.form()
    chans = await _sms_channels(pg)
    ch = _pick(chans, str(raw.get("channel") or "")) if raw.get("channel") else None
    if ch is None:
        raise InvalidInput(_("Choose a channel from the list."), field="channel")
    data = _read(raw)
    links = [(str(x.id), x.name) for x in await service.list_links(pg.session, ch.id)]
    form = _route_form(links, data)
    body = _validate(data, form)
    if body is not None:
        try:
            async with pg.session.begin_nested():
                await service.add_route(pg.session, ch.id, body)
            return pg.redirect(f"{BASE}?channel={ch.id}", toast=_("Route added."))
        except TesseraError as exc:
            apply_error(form, exc)
    return await _page(pg, str(ch.id), form=form, status=422)


@router.post("/porting/import")
async def porting_import(pg: Manager, request: Request) -> Response:
    raw = await request.form()
    channel = str(raw.get("channel") or "") or None
    upload = raw.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        return await _page(pg, channel, upload_error=_("Choose a CSV file."), status=422)
    content = await upload.read(MAX_UPLOAD + 1)
    if len(content) > MAX_UPLOAD:
        return await _page(pg, channel, upload_error=_("The file is larger than 2 MB."), status=422)
    try:
        rows = q.parse_porting_csv(content)
    except TesseraError as exc:
        return await _page(pg, channel, upload_error=exc.message, status=422)
    async with pg.session.begin_nested():
        done = await q.import_ported(pg.session, rows)
    suffix = f"?channel={channel}" if channel else ""
    return pg.redirect(
        f"{BASE}{suffix}",
        toast=_("%(added)s ported numbers added, %(updated)s updated.") % done,
    )


@router.post("/lookup")
async def lookup(pg: Manager, request: Request) -> Response:
    raw = await request.form()
    channel = str(raw.get("channel") or "") or None
    chans = await _sms_channels(pg)
    ch = _pick(chans, channel)
    number = str(raw.get("number") or "").strip()
    cls = str(raw.get("message_class") or "")
    if cls and cls not in MESSAGE_CLASSES:
        raise InvalidInput(_("Choose a value from the list."), field="message_class")
    if ch is None:
        return await _page(pg, channel, lookup_error=_("Create an SMS channel first."), status=422)
    if not number:
        return await _page(pg, channel, lookup_error=_("Enter a phone number."), lookup_class=cls, status=422)
    try:
        result = await q.lookup(pg.session, number, ch.id, cls or None)
    except TesseraError as exc:
        return await _page(pg, channel, lookup_error=i18n.gettext(exc.message), lookup_class=cls, status=422)
    return await _page(pg, str(ch.id), lookup=result, lookup_class=cls)


async def _route(pg: Page, route_id: uuid.UUID) -> RouteEntry:
    r = await q.get_route(pg.session, route_id)
    if r is None:
        raise RouteNotFound()
    return r


async def _edit_page(pg: Page, r: RouteEntry, form: Form | None = None, status: int = 200) -> Response:
    ch = await service.get_channel(pg.session, r.channel_id)
    links = [(str(x.id), x.name) for x in await service.list_links(pg.session, ch.id)]
    values = {
        "message_class": r.message_class or "",
        "carrier": r.carrier,
        "prefix": r.prefix or "",
        "link_id": str(r.link_id),
        "priority": r.priority,
        "weight": r.weight,
    }
    return pg.render(
        "connect/route_edit.html", status_code=status, r=r, ch=ch, form=form or _route_form(links, values)
    )


@router.get("/{route_id}")
async def route_detail(route_id: uuid.UUID, pg: Manager) -> Response:
    return await _edit_page(pg, await _route(pg, route_id))


@router.post("/{route_id}")
async def route_update(route_id: uuid.UUID, pg: Manager, request: Request) -> Response:
    r = await _route(pg, route_id)
    data = _read(await request.form())
    links = [(str(x.id), x.name) for x in await service.list_links(pg.session, r.channel_id)]
    form = _route_form(links, data)
    body = _validate(data, form)
    if body is not None:
        try:
            async with pg.session.begin_nested():
                await service.update_route(pg.session, route_id, body)
            return pg.redirect(f"{BASE}?channel={r.channel_id}", toast=_("Changes saved."))
        except TesseraError as exc:
            apply_error(form, exc)
    return await _edit_page(pg, r, form, 422)


@router.post("/{route_id}/delete")
async def route_delete(route_id: uuid.UUID, pg: Manager) -> Response:
    r = await _route(pg, route_id)
    channel_id = r.channel_id
    await service.delete_route(pg.session, route_id)
    return pg.redirect(f"{BASE}?channel={channel_id}", toast=_("Route deleted."))
