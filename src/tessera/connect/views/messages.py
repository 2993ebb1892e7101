"""Message search (status, channel, class, recipient, time range, campaign, reference), CSV export,
one message's delivery timeline, a "send a test message" form, and the home tile.

The recipient is posted (never put in a URL): the page answers with a redirect whose query
carries only the recipient's blind index (``rcpt``), an opaque per-tenant token.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
import zoneinfo
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.errors import MessageInvalid
from tessera.connect.models import FINAL_STATUSES, MESSAGE_CLASSES, MESSAGE_STATUSES, Message
from tessera.connect.schemas import MessageIn
from tessera.connect.service import channels as channel_service
from tessera.connect.service import console_queries as q
from tessera.connect.service import search, send
from tessera.connect.service import templates as template_service
from tessera.console import i18n
from tessera.console.components import (
    Form,
    FormField,
    TimelineEntry,
    _l,
    apply_error,
    form_data,
    refill,
    schema_form,
    validate_form,
)
from tessera.console.i18n import _
from tessera.console.registry import NavItem, Tile, register_nav, register_tile
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.core.access.masking import mask_email, mask_phone
from tessera.core.access.principal import Principal
from tessera.core.db.base import utcnow
from tessera.core.http.errors import InvalidInput, TesseraError

add_template_dir(Path(__file__).resolve().parents[1] / "templates")
router = console_router("/connect/messages")
BASE = f"{PREFIX}/connect/messages"
Reader = Annotated[Page, Depends(page("messages:read"))]
Sender = Annotated[Page, Depends(page("messages:send"))]

register_nav(NavItem("connect.messages", "Messages", BASE, "messages:read", module="connect", order=40))

STATUS_LABELS = {
    "accepted": _l("Accepted"),
    "held": _l("Held for review"),
    "queued": _l("Queued"),
    "submitted": _l("Submitted"),
    "delivered": _l("Delivered"),
    "failed": _l("Failed"),
    "expired": _l("Expired"),
    "rejected": _l("Rejected"),
}
CLASS_LABELS = {
    "verification": _l("Verification"),
    "notification": _l("Notification"),
    "marketing": _l("Marketing"),
}
CHANNEL_LABELS = {"sms": _l("SMS"), "wechat": _l("WeChat"), "email": _l("Email")}
EVENT_LABELS = {"status": _l("Status"), "receipt": _l("Delivery receipt"), "resubmitted": _l("Resubmitted")}
FILTER_PARAMS = ("status", "channel", "class", "campaign_id", "reference", "since", "until", "rcpt")


def _day_start(tz: str) -> dt.datetime:
    local = utcnow().astimezone(zoneinfo.ZoneInfo(tz))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)


@register_tile
async def messages_today_tile(session: AsyncSession, principal: Principal) -> Tile | None:
    if not principal.has("messages:read"):
        return None
    counts = await q.counts_since(session, _day_start(i18n.current_timezone()))
    total = sum(counts.values())
    pending = sum(counts.get(s, 0) for s in ("accepted", "queued", "submitted"))
    failed = sum(counts.get(s, 0) for s in ("failed", "expired", "rejected"))
    hint = _("%(delivered)s delivered · %(pending)s in progress · %(failed)s failed") % {
        "delivered": i18n.format_number(counts.get("delivered", 0)),
        "pending": i18n.format_number(pending),
        "failed": i18n.format_number(failed),
    }
    return Tile(_("Messages today"), i18n.format_number(total), BASE, hint=hint, order=50)


def _to(pg: Page, m: Message) -> str:
    see = pg.principal is not None and pg.principal.can_see_pii
    if see:
        return m.to
    if m.channel_kind == "email":
        return mask_email(m.to)
    if m.channel_kind == "wechat":
        return m.to[:4] + "…"
    return mask_phone(m.to)


def _params(pg: Page) -> tuple[dict[str, str], dict[str, str]]:
    """(the page's own filter values, the list-query parameters they translate to)."""
    raw = pg.request.query_params
    shown = {k: raw[k] for k in FILTER_PARAMS if raw.get(k)}
    params: dict[str, str] = {}
    for k in ("status", "channel", "reference", "rcpt"):
        if k in shown:
            params[k] = shown[k]
    if "class" in shown:
        params["class"] = shown["class"]
    if "campaign_id" in shown:
        try:
            uuid.UUID(shown["campaign_id"])
        except ValueError:
            raise InvalidInput(_("Enter a campaign id."), field="campaign_id") from None
        params["campaign_id"] = shown["campaign_id"]
    tz = zoneinfo.ZoneInfo(i18n.current_timezone())
    for key, param, end in (("since", "created_at__gte", False), ("until", "created_at__lte", True)):
        if key in shown:
            try:
                day = dt.date.fromisoformat(shown[key])
            except ValueError:
                raise InvalidInput(_("Enter a date as YYYY-MM-DD."), field=key) from None
            at = dt.datetime.combine(day + dt.timedelta(days=1) if end else day, dt.time(), tz)
            if end:
                at -= dt.timedelta(microseconds=1)
            params[param] = at.astimezone(dt.UTC).isoformat()
    for k in ("cursor", "limit"):
        if raw.get(k):
            params[k] = raw[k]
    return shown, params


def _qs(values: dict[str, str]) -> str:
    import urllib.parse

    return "?" + urllib.parse.urlencode(values) if values else ""


def _csv(pg: Page, rows: list[Message], names: dict[str, dict[uuid.UUID, str]]) -> Response:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(
        [_("Created"), _("Recipient"), _("Channel"), _("Class"), _("Status"), _("Reason"), _("Carrier"),
         _("Segments"), _("Cost"), _("Currency"), _("Reference"), _("Campaign"), _("Id")]
    )  # fmt: skip
    for m in rows:
        w.writerow(
            [m.created_at.isoformat(), _to(pg, m), names["channels"].get(m.channel_id, m.channel_kind),
             m.message_class, m.status, m.reason or "", m.carrier, m.segments, m.cost_minor, m.currency,
             m.reference or "", m.campaign_id or "", m.id]
        )  # fmt: skip
    return StreamingResponse(
        iter([buf.getvalue()]),
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="messages.csv"'},
    )


async def _list(pg: Page, *, recipient_error: str | None = None, status: int = 200) -> Response:
    shown, params = _params(pg)
    query = q.message_query(params)
    names = await q.names(pg.session)
    if pg.request.query_params.get("format") == "csv":
        return _csv(pg, await q.export_messages(pg.session, query), names)
    rows, cursor = await q.search_messages(pg.session, query)
    base = {k: v for k, v in shown.items()}
    nxt = _qs({**base, "cursor": cursor}) if cursor else None
    ctx: dict[str, Any] = dict(
        rows=rows,
        shown=shown,
        next_link=nxt,
        first_link=_qs(base) if query.cursor else None,
        export_link=_qs({**base, "format": "csv"}),
        names=names,
        to=lambda m: _to(pg, m),
        statuses=[(s, STATUS_LABELS[s]) for s in MESSAGE_STATUSES],
        classes=[(c, CLASS_LABELS[c]) for c in MESSAGE_CLASSES],
        channels=list(CHANNEL_LABELS.items()),
        status_labels=STATUS_LABELS,
        class_labels=CLASS_LABELS,
        recipient_error=recipient_error,
        can_send=pg.can("messages:send"),
    )
    tpl = (
        "connect/message_rows.html"
        if pg.partial and pg.request.headers.get("hx-target") == "message-rows"
        else "connect/message_list.html"
    )
    return pg.render(tpl, status_code=status, **ctx)


@router.get("")
async def messages(pg: Reader) -> Response:
    return await _list(pg)


@router.post("/search")
async def search_by_recipient(pg: Reader, request: Request) -> Response:
    """Find messages by recipient: the number is posted, the redirect carries only its index."""
    form = await request.form()
    raw = str(form.get("to") or "")
    keep = {k: str(form.get(k)) for k in FILTER_PARAMS if k != "rcpt" and form.get(k)}
    try:
        token = q.recipient_index(raw)
    except TesseraError as exc:
        return await _list(pg, recipient_error=i18n.gettext(exc.message), status=422)
    return pg.redirect(f"{BASE}{_qs({**keep, 'rcpt': token})}")


# --- send a test message --------------------------------------------------------------------

SEND_FIELDS = ["channel_id", "to", "message_class", "template_id", "body", "signature", "reference"]


async def _send_form(pg: Page, values: dict[str, Any] | None = None) -> Form:
    chans = [c for c in await channel_service.list_channels(pg.session) if c.status == "active"]
    tpls = [t for t in await template_service.list_all(pg.session) if t.status == "approved"]
    sigs = await q.approved_signatures(pg.session)
    form = schema_form(
        MessageIn,
        values,
        only=SEND_FIELDS,
        labels={
            "channel_id": _("Channel"),
            "to": _("Recipient"),
            "message_class": _("Class"),
            "template_id": _("Template"),
            "body": _("Text"),
            "signature": _("Signature"),
            "reference": _("Your reference"),
        },
        options={
            "channel_id": [(str(c.id), f"{c.name} ({CHANNEL_LABELS.get(c.kind, c.kind)})") for c in chans],
            "message_class": [(k, str(v)) for k, v in CLASS_LABELS.items()],
            "template_id": [(str(t.id), t.name) for t in tpls],
            "signature": [(s.text, f"【{s.text}】") for s in sigs],
        },
        kinds={"body": "textarea"},
        help={
            "to": _("A phone number; an email address or WeChat openid on those channels."),
            "body": _("Leave empty when you choose a template."),
            "template_id": _("Approved templates only."),
        },
    )
    form.fields.insert(
        SEND_FIELDS.index("template_id") + 1,
        FormField(
            "variables",
            _("Template variables"),
            "textarea",
            (values or {}).get("variables", ""),
            maxlength=4000,
            help=_("One per line: name=value."),
        ),
    )
    return form


def _variables(raw: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        name, sep, value = line.partition("=")
        if not sep or not name.strip():
            raise MessageInvalid(
                _("Line %(n)s: write name=value.") % {"n": i}, field="variables", rule="format"
            )
        out[name.strip()] = value.strip()
    return out


@router.get("/send")
async def send_page(pg: Sender) -> Response:
    return pg.render(
        "connect/message_send.html", form=await _send_form(pg, {"message_class": "notification"})
    )


@router.post("/send")
async def send_submit(pg: Sender, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, MessageIn, only=SEND_FIELDS)
    form = await _send_form(pg)
    body = validate_form(MessageIn, data, form)
    if "class" in form.errors:  # the schema field is aliased "class"
        form.errors["message_class"] = form.errors.pop("class")
        form.message = None
        _attach_errors(form)
    variables_raw = str(raw.get("variables") or "")
    data["variables"] = variables_raw
    try:
        variables = _variables(variables_raw)
    except TesseraError as exc:
        apply_error(form, exc)
        body = None
    if body is not None:
        assert isinstance(body, MessageIn)
        body.variables = variables
        try:
            async with pg.session.begin_nested():
                accepted = await send.send_message(pg.session, body)
            return pg.redirect(f"{BASE}/{accepted.id}", toast=_("Message accepted."))
        except TesseraError as exc:
            field = (exc.field or "").split(".")[0]
            exc.field = {"class": "message_class", "channel": "channel_id"}.get(field, field)
            apply_error(form, exc)
    return pg.render("connect/message_send.html", form=refill(form, data), status_code=422)


def _attach_errors(form: Form) -> None:
    for f in form.fields:
        f.error = form.errors.get(f.name)


# --- one message ----------------------------------------------------------------------------


def _event_detail(detail: dict[str, Any], links: dict[uuid.UUID, str]) -> str:
    parts = []
    if detail.get("reason"):
        parts.append(_("Reason: %(reason)s") % {"reason": detail["reason"]})
    if detail.get("carrier"):
        parts.append(_("Carrier: %(carrier)s") % {"carrier": detail["carrier"]})
    if detail.get("link_id"):
        try:
            name = links.get(uuid.UUID(str(detail["link_id"])), str(detail["link_id"]))
        except ValueError:
            name = str(detail["link_id"])
        parts.append(_("Link: %(link)s") % {"link": name})
    if detail.get("carrier_ids"):
        parts.append(_("Carrier ids: %(ids)s") % {"ids": ", ".join(str(c) for c in detail["carrier_ids"])})
    if detail.get("claim"):
        parts.append(
            _("Attempt %(n)s, after gateway %(gw)s stopped")
            % {"n": detail["claim"], "gw": detail.get("gateway", "")}
        )
    return " · ".join(parts)


@router.get("/{message_id}")
async def message_detail(message_id: uuid.UUID, pg: Reader) -> Response:
    m, events = await search.get_message(pg.session, message_id)
    names = await q.names(pg.session)
    timeline = [
        TimelineEntry(
            e.at,
            f"{STATUS_LABELS.get(e.status, e.status)}"
            + (f" ({EVENT_LABELS[e.kind]})" if e.kind != "status" and e.kind in EVENT_LABELS else ""),
            detail=_event_detail(e.detail or {}, names["links"]),
        )
        for e in events
    ]
    route = m.route or {}
    tried = []
    for raw in route.get("tried") or []:
        try:
            tried.append(names["links"].get(uuid.UUID(str(raw)), str(raw)))
        except ValueError:
            tried.append(str(raw))
    return pg.render(
        "connect/message_detail.html",
        m=m,
        to=_to(pg, m),
        timeline=timeline,
        names=names,
        status_label=STATUS_LABELS.get(m.status, m.status),
        class_label=CLASS_LABELS.get(m.message_class, m.message_class),
        channel_label=CHANNEL_LABELS.get(m.channel_kind, m.channel_kind),
        route_link=names["links"].get(m.link_id) if m.link_id else None,
        tried=tried,
        final=m.status in FINAL_STATUSES,
        cost=i18n.format_number(m.cost_minor / 100),
    )
