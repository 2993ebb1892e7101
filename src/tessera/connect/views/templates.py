"""Message templates (per-channel bodies, variables, approval draft → pending → approved /
rejected, preview of encoding and segments) and SMS signatures 【Brand】.

Approving and rejecting need ``channels:approve`` (registered here): whoever writes a template
is not, by default, the one who approves it.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from pydantic import ValidationError

from tessera.connect.models import MESSAGE_CLASSES, Template
from tessera.connect.schemas import RejectIn, SignatureIn, TemplateIn, TemplatePatch
from tessera.connect.service import channels as channel_service
from tessera.connect.service import console_queries as q
from tessera.connect.service import templates as service
from tessera.console import i18n
from tessera.console.components import (
    Action,
    Form,
    FormField,
    _l,
    apply_error,
    form_data,
    refill,
    schema_form,
    validate_form,
)
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.core.access import permissions
from tessera.core.http.errors import TesseraError

add_template_dir(Path(__file__).resolve().parents[1] / "templates")
APPROVE = permissions.register("channels:approve", "Approve or reject message templates and signatures")
router = console_router("/connect/templates")
BASE = f"{PREFIX}/connect/templates"
Reader = Annotated[Page, Depends(page("messages:read"))]
Manager = Annotated[Page, Depends(page("channels:manage"))]
Approver = Annotated[Page, Depends(page(APPROVE))]

register_nav(NavItem("connect.templates", "Templates", BASE, "messages:read", module="connect", order=41))

STATUS_LABELS = {
    "draft": _l("Draft"),
    "pending": _l("Pending approval"),
    "approved": _l("Approved"),
    "rejected": _l("Rejected"),
}
CLASS_LABELS = {
    "verification": _l("Verification"),
    "notification": _l("Notification"),
    "marketing": _l("Marketing"),
}
CHANNELS = (("sms", _l("SMS text")), ("wechat", _l("WeChat text")))


def _template_form(values: dict[str, Any] | None = None, *, new: bool = True) -> Form:
    v = values or {}
    fields = [
        FormField("name", _("Name"), value=v.get("name", ""), required=True, maxlength=120),
    ]
    if new:
        fields.append(
            FormField(
                "message_class",
                _("Class"),
                "select",
                v.get("message_class", "notification"),
                required=True,
                options=[(c, str(CLASS_LABELS[c])) for c in MESSAGE_CLASSES],
            )
        )
    for ch, label in CHANNELS:
        fields.append(
            FormField(
                f"body_{ch}",
                str(label),
                "textarea",
                v.get(f"body_{ch}", ""),
                maxlength=2000,
                help=_("Variables are written {{name}}.") if ch == "sms" else _("Optional."),
            )
        )
    fields.append(
        FormField(
            "external_id",
            _("WeChat template id"),
            value=v.get("external_id", "") or "",
            maxlength=128,
            help=_("The id WeChat assigned; needed to send on WeChat."),
        )
    )
    return Form(fields)


def _read_form(raw: Any) -> dict[str, str]:
    keys = ["name", "message_class", "external_id"] + [f"body_{c}" for c, _l in CHANNELS]
    return {k: str(raw.get(k) or "") for k in keys}


def _validate(data: dict[str, str], form: Form, schema: type[TemplateIn] | type[TemplatePatch]) -> Any:
    bodies = {c: data[f"body_{c}"] for c, _x in CHANNELS if data.get(f"body_{c}", "").strip()}
    payload: dict[str, Any] = {"name": data["name"].strip(), "bodies": bodies}
    if schema is TemplateIn:
        payload["class"] = data["message_class"]
    if data.get("external_id"):
        payload["external_id"] = data["external_id"].strip()
    if not bodies:
        form.errors["body_sms"] = _("Write the text for at least one channel.")
    try:
        body = schema.model_validate(payload)
    except ValidationError as exc:
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ())]
            name = {"class": "message_class", "bodies": "body_" + (loc[1] if len(loc) > 1 else "sms")}.get(
                loc[0] if loc else "", loc[0] if loc else ""
            )
            msg = {
                "missing": _("This field is required."),
                "string_too_short": _("This is too short."),
                "string_too_long": _("This is too long."),
            }.get(str(e.get("type")), _("This value is not valid."))
            form.errors.setdefault(name, msg)
        body = None
    _attach(form)
    return None if form.errors else body


def _attach(form: Form) -> None:
    for f in form.fields:
        f.error = form.errors.get(f.name)


def _service_error(form: Form, exc: TesseraError) -> None:
    field = exc.field or ""
    if field.startswith("bodies."):
        exc.field = "body_" + field.split(".", 1)[1]
    elif field == "class":
        exc.field = "message_class"
    apply_error(form, exc)


async def _signature_form(values: dict[str, Any] | None = None) -> Form:
    return schema_form(
        SignatureIn,
        values,
        labels={"text": _("Brand name"), "is_default": _("Use by default")},
        help={"text": _("Without the 【】 brackets; it is reviewed before use.")},
    )


async def _list(pg: Page, sig_form: Form | None = None, status: int = 200) -> Response:
    rows = await service.list_all(pg.session)
    sigs = await channel_service.list_signatures(pg.session)
    manage = pg.can("channels:manage")
    return pg.render(
        "connect/template_list.html",
        status_code=status,
        rows=rows,
        sigs=sigs,
        status_labels=STATUS_LABELS,
        class_labels=CLASS_LABELS,
        manage=manage,
        approve=pg.can(APPROVE),
        sig_form=sig_form or (await _signature_form() if manage else None),
    )


@router.get("")
async def templates(pg: Reader) -> Response:
    return await _list(pg)


@router.get("/new")
async def new_page(pg: Manager) -> Response:
    return pg.render("connect/template_new.html", form=_template_form())


@router.post("/new")
async def new_submit(pg: Manager, request: Request) -> Response:
    data = _read_form(await request.form())
    form = _template_form(data)
    body = _validate(data, form, TemplateIn)
    if body is not None:
        try:
            async with pg.session.begin_nested():
                t = await service.create(pg.session, body)
            return pg.redirect(f"{BASE}/{t.id}", toast=_("Template saved as a draft."))
        except TesseraError as exc:
            _service_error(form, exc)
    return pg.render("connect/template_new.html", form=form, status_code=422)


def _values(t: Template) -> dict[str, Any]:
    return {
        "name": t.name,
        "message_class": t.message_class,
        "external_id": t.external_id or "",
        **{f"body_{c}": t.bodies.get(c, "") for c, _x in CHANNELS},
    }


async def _detail(
    pg: Page,
    template_id: uuid.UUID,
    *,
    form: Form | None = None,
    reject_error: str | None = None,
    status: int = 200,
) -> Response:
    t = await service.get(pg.session, template_id)
    base = f"{BASE}/{t.id}"
    manage, approve = pg.can("channels:manage"), pg.can(APPROVE)
    actions: list[Action] = []
    if manage and t.status in ("draft", "rejected"):
        actions.append(Action(_("Submit for approval"), f"{base}/submit", "post", primary=True))
    if approve and t.status == "pending":
        actions.append(Action(_("Approve"), f"{base}/approve", "post", primary=True))
    edit = form or (_template_form(_values(t), new=False) if manage and t.status != "pending" else None)
    sigs = await q.approved_signatures(pg.session)
    return pg.render(
        "connect/template_detail.html",
        status_code=status,
        t=t,
        actions=actions,
        form=edit,
        can_reject=approve and t.status == "pending",
        reject_error=reject_error,
        status_label=STATUS_LABELS.get(t.status, t.status),
        class_label=CLASS_LABELS.get(t.message_class, t.message_class),
        channels=[(c, label) for c, label in CHANNELS if c in t.bodies],
        signatures=sigs,
    )


@router.get("/{template_id}")
async def template_detail(template_id: uuid.UUID, pg: Reader) -> Response:
    return await _detail(pg, template_id)


@router.post("/{template_id}")
async def template_update(template_id: uuid.UUID, pg: Manager, request: Request) -> Response:
    t = await service.get(pg.session, template_id)
    data = _read_form(await request.form())
    data["message_class"] = t.message_class
    form = _template_form(data, new=False)
    body = _validate(data, form, TemplatePatch)
    if body is not None:
        if body.bodies == t.bodies:
            body.bodies = None  # only a changed text needs a new approval
        try:
            async with pg.session.begin_nested():
                await service.update(pg.session, template_id, body)
            return pg.redirect(f"{BASE}/{template_id}", toast=_("Changes saved."))
        except TesseraError as exc:
            _service_error(form, exc)
    return await _detail(pg, template_id, form=form, status=422)


async def _transition(pg: Page, template_id: uuid.UUID, action: str, reason: str | None = None) -> Response:
    toasts = {
        "submit": _("Submitted for approval."),
        "approve": _("Template approved."),
        "reject": _("Template rejected."),
    }
    await service.transition(pg.session, template_id, action, reason)
    return pg.redirect(f"{BASE}/{template_id}", toast=toasts[action])


@router.post("/{template_id}/submit")
async def template_submit(template_id: uuid.UUID, pg: Manager) -> Response:
    return await _transition(pg, template_id, "submit")


@router.post("/{template_id}/approve")
async def template_approve(template_id: uuid.UUID, pg: Approver) -> Response:
    return await _transition(pg, template_id, "approve")


@router.post("/{template_id}/reject")
async def template_reject(template_id: uuid.UUID, pg: Approver, request: Request) -> Response:
    raw = await request.form()
    try:
        body = RejectIn(reason=str(raw.get("reason") or "").strip())
    except ValidationError:
        await service.get(pg.session, template_id)  # a foreign id is a 404, not a form error
        return await _detail(
            pg,
            template_id,
            reject_error=_("Give a reason of at most 500 characters."),
            status=422,
        )
    return await _transition(pg, template_id, "reject", body.reason)


@router.post("/{template_id}/preview")
async def template_preview(template_id: uuid.UUID, pg: Reader, request: Request) -> Response:
    """The htmx preview: the body of one channel rendered with the variables typed in."""
    t = await service.get(pg.session, template_id)
    raw = await request.form()
    channel = str(raw.get("channel") or "sms")
    body = t.bodies.get(channel)
    variables = {
        v: str(raw.get(f"var_{v}") or "") for v in t.variables if v in set(service.variables_of(body or ""))
    }
    signature = str(raw.get("signature") or "") or None
    result: dict[str, Any] | None = None
    error = None
    if body is None:
        error = _("This template has no text for that channel.")
    else:
        try:
            result = q.preview(body, variables, signature, channel)
        except TesseraError as exc:
            error = i18n.gettext(exc.message)
    return pg.render("connect/template_preview.html", result=result, error=error)


# --- signatures -----------------------------------------------------------------------------


@router.post("/signatures/new")
async def signature_create(pg: Manager, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, SignatureIn)
    form = await _signature_form()
    body = validate_form(SignatureIn, data, form)
    if body is not None:
        assert isinstance(body, SignatureIn)
        try:
            async with pg.session.begin_nested():
                await channel_service.create_signature(pg.session, body)
            return pg.redirect(BASE, toast=_("Signature registered; it is pending review."))
        except TesseraError as exc:
            apply_error(form, exc)
    return await _list(pg, sig_form=refill(form, data), status=422)


@router.post("/signatures/{signature_id}/approve")
async def signature_approve(signature_id: uuid.UUID, pg: Approver) -> Response:
    await channel_service.review_signature(pg.session, signature_id, True)
    return pg.redirect(BASE, toast=_("Signature approved."))


@router.post("/signatures/{signature_id}/reject")
async def signature_reject(signature_id: uuid.UUID, pg: Approver) -> Response:
    await channel_service.review_signature(pg.session, signature_id, False)
    return pg.redirect(BASE, toast=_("Signature rejected."))
