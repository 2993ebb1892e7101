"""Segments: list, rule builder with a live size preview (``contacts-segments.js`` edits the
JSON rule tree; htmx posts it to ``/preview``), save, membership refresh, members, static
lists, and exports of a segment (CSV/XLSX) as a background job with an expiring link."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from tessera.console.components import Action, BulkAction, Column, ListPage, Tab, _l
from tessera.console.i18n import _, format_number
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page, parse_uuid
from tessera.contacts.models import CONSENT_CHANNELS, LIFECYCLE_STAGES, Segment
from tessera.contacts.schemas import SegmentCreate, SegmentUpdate
from tessera.contacts.service import console_data
from tessera.contacts.service import imports as imports_svc
from tessera.contacts.service import segments as seg_svc
from tessera.core.access.masking import caller_sees_pii
from tessera.core.http.errors import Forbidden, InvalidInput, TesseraError

router = console_router("/contacts/segments")
add_template_dir(Path(__file__).resolve().parents[1] / "templates")
Reader = Annotated[Page, Depends(page("contacts:read"))]
Writer = Annotated[Page, Depends(page("contacts:write"))]
Exporter = Annotated[Page, Depends(page("contacts:import"))]
BASE = f"{PREFIX}/contacts/segments"

register_nav(NavItem("contacts.segments", "Segments", BASE, "contacts:read", module="contacts", order=25))

KIND_LABELS = {"dynamic": _l("Dynamic"), "static": _l("Static list")}
EXPORT_STATUS = {
    "queued": _l("Queued"),
    "running": _l("Running"),
    "done": _l("Ready"),
    "failed": _l("Failed"),
    "cancelled": _l("Cancelled"),
}
DEFAULT_RULES: dict[str, Any] = {
    "op": "and",
    "rules": [{"type": "attribute", "field": "city", "op": "eq", "value": ""}],
}


def segments_list(pg: Page) -> ListPage:
    actions = []
    if pg.can("contacts:write"):
        actions = [(_("New segment"), f"{BASE}/new"), (_("New static list"), f"{BASE}/new?kind=static")]
    return ListPage(
        key="contacts.segments",
        title=_("Segments"),
        filterset=console_data.SEGMENT_LIST_FILTERS,
        export=False,
        columns=[
            Column("name", _("Name"), sortable=True, link=True),
            Column("kind", _("Kind"), value=lambda s: str(KIND_LABELS.get(s.kind, s.kind))),
            Column("member_count", _("Members"), kind="number"),
            Column("refreshed_at", _("Refreshed"), kind="datetime", hide_on_phone=True),
            Column("created_at", _("Created"), sortable=True, kind="datetime", hide_on_phone=True),
        ],
        row_href=lambda s: f"{BASE}/{s.id}",
        labels={"name": _("Name"), "kind": _("Kind")},
        options={"kind": [(k, str(v)) for k, v in KIND_LABELS.items()]},
        search_param="name__contains",
        empty_text=_("No segments yet."),
        actions=actions,
    )


@router.get("")
async def segments_page(pg: Reader) -> Response:
    lst = segments_list(pg)
    return lst.respond(pg, await lst.run(pg, console_data.segments_query()))


def builder_labels() -> dict[str, Any]:
    """Every string the rule builder script shows, translated for the user."""
    return {
        "match": _("Match"),
        "all": _("all of these"),
        "any": _("any of these"),
        "add_condition": _("Add condition"),
        "add_group": _("Add group"),
        "remove": _("Remove"),
        "remove_group": _("Remove group"),
        "group": _("Group of conditions"),
        "condition": _("Condition"),
        "type": _("Condition type"),
        "field": _("Field"),
        "operator": _("Operator"),
        "value": _("Value"),
        "value_to": _("Upper value"),
        "values_hint": _("Separate values with commas"),
        "types": {
            "attribute": _("Contact field"),
            "account": _("Account field"),
            "tag": _("Tags"),
            "event": _("Events"),
            "consent": _("Consent"),
            "lifecycle": _("Lifecycle stage"),
            "segment": _("In segment"),
        },
        "ops": {
            "eq": _("is"),
            "neq": _("is not"),
            "in": _("is one of"),
            "contains": _("contains"),
            "gt": _("greater than"),
            "lt": _("less than"),
            "between": _("between"),
            "is_set": _("is set"),
        },
        "yes": _("yes"),
        "no": _("no"),
        "contact_fields": {
            "name": _("Name"),
            "given_name": _("Given name"),
            "family_name": _("Family name"),
            "gender": _("Gender"),
            "city": _("City"),
            "language": _("Language"),
            "source": _("Source"),
            "lifecycle_stage": _("Lifecycle stage"),
        },
        "account_fields": {
            "name": _("Account name"),
            "industry": _("Industry"),
            "size": _("Size"),
            "region": _("Region"),
        },
        "tag_match": {"any": _("has any of"), "all": _("has all of"), "none": _("has none of")},
        "tags": _("Tags to match"),
        "event_name": _("Event name"),
        "count_op": _("How many times"),
        "count_ops": {
            "gte": _("at least"),
            "gt": _("more than"),
            "eq": _("exactly"),
            "lte": _("at most"),
            "lt": _("fewer than"),
        },
        "count": _("Count"),
        "window": _("When"),
        "windows": {"any": _("any time"), "relative": _("in the last days"), "absolute": _("between dates")},
        "within_days": _("Days"),
        "from": _("From"),
        "to": _("To"),
        "property": _("Property"),
        "add_property": _("Add property filter"),
        "channel": _("Channel"),
        "channels": {c: c.upper() if c == "sms" else c.capitalize() for c in CONSENT_CHANNELS},
        "consent_status": _("Consent status"),
        "consent_statuses": {
            "opted_in": _("opted in"),
            "opted_out": _("opted out"),
            "unknown": _("unknown"),
        },
        "stages": _("Stages"),
        "stage_names": {
            "subscriber": _("Subscriber"),
            "lead": _("Lead"),
            "qualified": _("Qualified"),
            "customer": _("Customer"),
            "churned": _("Churned"),
        },
        "segment": _("Segment"),
    }


async def _builder_meta(pg: Page, exclude: uuid.UUID | None = None) -> str:
    opts = await console_data.builder_options(pg.session)
    opts["segments"] = [s for s in opts["segments"] if s["id"] != str(exclude)]
    opts["labels"] = builder_labels()
    opts["stages"] = list(LIFECYCLE_STAGES)
    return json.dumps(opts, ensure_ascii=False).replace("<", "\\u003c")


async def _editor(
    pg: Page,
    seg: Segment | None,
    *,
    kind: str,
    name: str,
    rules_text: str,
    error: str | None = None,
    error_field: str | None = None,
    status: int = 200,
) -> Response:
    return pg.render(
        "contacts/segment_edit.html",
        status_code=status,
        seg=seg,
        kind=kind,
        name=name,
        rules_text=rules_text,
        error=error,
        error_field=error_field,
        meta=await _builder_meta(pg, seg.id if seg else None),
        tabs=_tabs(seg, "rules") if seg else [],
        actions=_actions(pg, seg) if seg else [],
        kind_label=KIND_LABELS.get(kind, kind),
    )


@router.get("/new")
async def new_segment(pg: Writer, kind: str = "dynamic") -> Response:
    kind = "static" if kind == "static" else "dynamic"
    text = json.dumps(DEFAULT_RULES, ensure_ascii=False, indent=1) if kind == "dynamic" else ""
    return await _editor(pg, None, kind=kind, name="", rules_text=text)


def _parse_rules(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidInput("rules are required for a dynamic segment", field="rules")
    try:
        value = json.loads(raw)
    except ValueError:
        raise InvalidInput("the rules are not valid JSON", field="rules") from None
    if not isinstance(value, dict):
        raise InvalidInput("the rules must be a JSON object", field="rules")
    return value


def _error_text(exc: TesseraError) -> str:
    msg = _(exc.message)
    return f"{msg} ({exc.field})" if exc.field else msg


@router.post("/new")
async def create_segment(pg: Writer, request: Request) -> Response:
    form = await request.form()
    kind = "static" if form.get("kind") == "static" else "dynamic"
    name = str(form.get("name") or "").strip()
    rules_text = str(form.get("rules") or "")
    try:
        if not name:
            raise InvalidInput("a name is required", field="name")
        if len(name) > 200:
            raise InvalidInput("the name is longer than 200 characters", field="name")
        rules = _parse_rules(rules_text) if kind == "dynamic" else None
        seg = await seg_svc.create_segment(pg.session, SegmentCreate(name=name, kind=kind, rules=rules))  # type: ignore[arg-type]
        if kind == "dynamic":
            await seg_svc.refresh_segment(pg.session, seg.id)
    except TesseraError as exc:
        return await _editor(
            pg,
            None,
            kind=kind,
            name=name,
            rules_text=rules_text,
            error=_error_text(exc),
            error_field=exc.field,
            status=exc.status,
        )
    return pg.redirect(f"{BASE}/{seg.id}", toast=_("Segment saved."))


@router.post("/preview")
async def preview(pg: Reader, request: Request) -> Response:
    """The live size: how many contacts match the posted rules now (one SQL query)."""
    form = await request.form()
    try:
        n = await seg_svc.count_matching(pg.session, _parse_rules(form.get("rules")))
    except TesseraError as exc:
        return pg.render(
            "contacts/segment_preview.html", count=None, error=_error_text(exc), error_field=exc.field
        )
    return pg.render("contacts/segment_preview.html", count=n, count_text=format_number(n), error=None)


def _tabs(seg: Segment, active: str) -> list[Tab]:
    tabs = []
    if seg.kind == "dynamic":
        tabs.append(Tab("rules", _("Rules"), f"{BASE}/{seg.id}"))
    tabs.append(Tab("members", _("Members"), f"{BASE}/{seg.id}?tab=members", seg.member_count))
    return tabs


def _actions(pg: Page, seg: Segment) -> list[Action]:
    out = []
    if seg.kind == "dynamic" and pg.can("contacts:write"):
        out.append(Action(_("Refresh membership"), f"{BASE}/{seg.id}/refresh", "post"))
    if pg.can("contacts:write"):
        out.append(
            Action(
                _("Delete"),
                f"{BASE}/{seg.id}/delete",
                "post",
                danger=True,
                confirm=_("Delete this segment? Campaigns that use it lose their audience."),
            )
        )
    return out


def members_list(pg: Page, seg: Segment) -> ListPage:
    bulk = []
    if seg.kind == "static" and pg.can("contacts:write"):
        bulk = [BulkAction("remove", _("Remove from list"), f"{BASE}/{seg.id}/members/remove")]
    return ListPage(
        key="contacts.segment_members",
        title=_("Members"),
        filterset=console_data.MEMBER_FILTERS,
        export=False,
        columns=[
            Column("name", _("Name"), sortable=True, link=True),
            Column("city", _("City")),
            Column("lifecycle_stage", _("Lifecycle stage"), hide_on_phone=True),
            Column("created_at", _("Created"), sortable=True, kind="datetime", hide_on_phone=True),
        ],
        row_href=lambda c: f"{PREFIX}/contacts/{c.id}",
        bulk_actions=bulk,
        labels={"name": _("Name")},
        search_param="name__contains",
        empty_text=_("No members yet.")
        if seg.kind == "static"
        else _("No members. Refresh the membership after changing the rules."),
    )


@router.get("/exports/{export_id}")
async def export_page(export_id: uuid.UUID, pg: Exporter) -> Response:
    job = await console_data.get_export(pg.session, export_id)
    assert pg.principal
    token = link = None
    if job.status == "done":
        token = console_data.sign_download(job.id, pg.principal.user_id)
        link = f"{BASE}/exports/{job.id}/file?token={token}"
    seg = None
    sid = parse_uuid(str(job.options.get("segment_id") or ""))
    if sid is not None:
        try:
            seg = await seg_svc.get_segment(pg.session, sid)
        except TesseraError:
            seg = None
    tpl = "contacts/segment_export_status.html" if pg.partial else "contacts/segment_export.html"
    return pg.render(
        tpl,
        job=job,
        seg=seg,
        link=link,
        expires=console_data.link_expires_at(token) if token else None,
        status_label=EXPORT_STATUS.get(job.status, job.status),
        fmt=str(job.options.get("format") or "csv").upper(),
        masked=not job.options.get("unmasked"),
        polling=job.status in ("queued", "running"),
        base=f"{BASE}/exports/{job.id}",
    )


@router.get("/exports/{export_id}/file")
async def export_file(export_id: uuid.UUID, pg: Exporter, token: str = "") -> Response:
    job = await console_data.get_export(pg.session, export_id)
    assert pg.principal
    console_data.check_download(token, job.id, pg.principal.user_id)
    if job.status != "done":
        raise InvalidInput(_("The export is not ready yet."), field="export_id")
    if job.options.get("unmasked") and not caller_sees_pii():
        raise Forbidden(_("This export holds unmasked personal data you may not see."))
    body, media, ext = console_data.export_bytes(job)
    return Response(
        body,
        media_type=media,
        headers={"content-disposition": f'attachment; filename="segment-export-{job.id}.{ext}"'},
    )


@router.get("/{segment_id}")
async def segment_detail(segment_id: uuid.UUID, pg: Reader, tab: str = "") -> Response:
    seg = await seg_svc.get_segment(pg.session, segment_id)
    if seg.kind == "dynamic" and tab != "members":
        text = json.dumps(seg.rules or DEFAULT_RULES, ensure_ascii=False, indent=1)
        return await _editor(pg, seg, kind=seg.kind, name=seg.name, rules_text=text)
    assert pg.principal
    lst = members_list(pg, seg)
    result = await lst.run(pg, console_data.members_query(seg.id, pg.principal))
    if pg.partial and pg.request.headers.get("hx-target") == "list-contacts-segment_members":
        return lst.respond(pg, result)
    return pg.render(
        "contacts/segment_members.html",
        seg=seg,
        lst=lst,
        result=result,
        tabs=_tabs(seg, "members"),
        actions=_actions(pg, seg),
        kind_label=KIND_LABELS.get(seg.kind, seg.kind),
    )


@router.post("/{segment_id}")
async def save_segment(segment_id: uuid.UUID, pg: Writer, request: Request) -> Response:
    seg = await seg_svc.get_segment(pg.session, segment_id)
    form = await request.form()
    name = str(form.get("name") or "").strip()
    rules_text = str(form.get("rules") or "")
    try:
        if not name:
            raise InvalidInput("a name is required", field="name")
        if len(name) > 200:
            raise InvalidInput("the name is longer than 200 characters", field="name")
        rules = _parse_rules(rules_text) if seg.kind == "dynamic" else None
        await seg_svc.update_segment(pg.session, seg.id, SegmentUpdate(name=name, rules=rules))
        if seg.kind == "dynamic":
            await seg_svc.refresh_segment(pg.session, seg.id)
    except TesseraError as exc:
        return await _editor(
            pg,
            seg,
            kind=seg.kind,
            name=name,
            rules_text=rules_text,
            error=_error_text(exc),
            error_field=exc.field,
            status=exc.status,
        )
    return pg.redirect(f"{BASE}/{seg.id}", toast=_("Segment saved."))


@router.post("/{segment_id}/refresh")
async def refresh(segment_id: uuid.UUID, pg: Writer) -> Response:
    n, entered, left = await seg_svc.refresh_segment(pg.session, segment_id)
    msg = _("%(n)s members (%(entered)s entered, %(left)s left).") % {
        "n": format_number(n),
        "entered": format_number(entered),
        "left": format_number(left),
    }
    return pg.redirect(f"{BASE}/{segment_id}?tab=members", toast=msg)


@router.post("/{segment_id}/delete")
async def delete(segment_id: uuid.UUID, pg: Writer) -> Response:
    await seg_svc.delete_segment(pg.session, segment_id)
    return pg.redirect(BASE, toast=_("Segment deleted."))


@router.get("/{segment_id}/candidates")
async def candidates(segment_id: uuid.UUID, pg: Writer, q: str = "") -> Response:
    """Contacts to add to a static list, searched by name (htmx)."""
    seg = await seg_svc.get_segment(pg.session, segment_id)
    assert pg.principal
    rows = (
        await console_data.member_candidates(pg.session, seg.id, pg.principal, q.strip()) if q.strip() else []
    )
    return pg.render("contacts/segment_candidates.html", seg=seg, rows=rows, q=q, base=f"{BASE}/{seg.id}")


def _ids(values: list[Any]) -> list[uuid.UUID]:
    out = [parse_uuid(v) for v in values if isinstance(v, str)]
    return [i for i in out if i is not None]


async def _chosen(request: Request) -> list[uuid.UUID]:
    """The contact ids ticked in a members form; at least one."""
    ids = _ids((await request.form()).getlist("ids"))
    if not ids:
        raise InvalidInput(_("Choose at least one contact."), field="ids")
    return ids


@router.post("/{segment_id}/members")
async def add_members(segment_id: uuid.UUID, pg: Writer, request: Request) -> Response:
    ids = await _chosen(request)
    n = await seg_svc.add_members(pg.session, segment_id, ids)
    return pg.redirect(f"{BASE}/{segment_id}?tab=members", toast=_("%(n)s added to the list.") % {"n": n})


@router.post("/{segment_id}/members/remove")
async def remove_members(segment_id: uuid.UUID, pg: Writer, request: Request) -> Response:
    ids = await _chosen(request)
    n = await seg_svc.remove_members(pg.session, segment_id, ids)
    return pg.redirect(f"{BASE}/{segment_id}?tab=members", toast=_("%(n)s removed from the list.") % {"n": n})


@router.post("/{segment_id}/export")
async def export(segment_id: uuid.UUID, pg: Exporter, request: Request) -> Response:
    """Export the members (refreshed first when dynamic) with the export service; masking
    follows the caller, the file is offered in the chosen format."""
    seg = await seg_svc.get_segment(pg.session, segment_id)
    form = await request.form()
    fmt = form.get("format") or "csv"
    if fmt not in console_data.EXPORT_FORMATS:
        raise InvalidInput(_("The format must be CSV or XLSX."), field="format")
    if seg.kind == "dynamic" and seg.rules:
        await seg_svc.refresh_segment(pg.session, seg.id)
    job = await imports_svc.start_export(pg.session, {}, seg.id)
    assert pg.principal
    console_data.set_export_format(job, str(fmt), pg.principal.user_id)
    return pg.redirect(f"{BASE}/exports/{job.id}", toast=_("Export started."))
