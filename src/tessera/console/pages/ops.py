"""Operations pages of the tenant: background jobs (jobs:read) and webhook endpoints with their
deliveries (admin:webhooks). Mounted only when the jobs and webhooks kernels are installed."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from tessera.console.components import (
    Action,
    Column,
    Form,
    ListPage,
    apply_error,
    form_data,
    refill,
    schema_form,
    validate_form,
)
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, console_router, page
from tessera.core.http.errors import TesseraError
from tessera.core.jobs import service as jobs
from tessera.core.jobs.api import JOB_FILTERS, JobNotFound, JobStateConflict
from tessera.core.webhooks import service as webhooks
from tessera.core.webhooks.api import DELIVERY_FILTERS, ENDPOINT_FILTERS
from tessera.core.webhooks.models import WebhookDelivery, WebhookEndpoint
from tessera.core.webhooks.schemas import EndpointCreate

router = console_router("/admin")
JobsRead = Annotated[Page, Depends(page("jobs:read"))]
JobsManage = Annotated[Page, Depends(page("jobs:manage"))]
HooksAdmin = Annotated[Page, Depends(page("admin:webhooks"))]

register_nav(
    NavItem("admin.webhooks", "Webhooks", f"{PREFIX}/admin/webhooks", "admin:webhooks", "admin", order=45)
)
register_nav(NavItem("admin.jobs", "Background jobs", f"{PREFIX}/admin/jobs", "jobs:read", "admin", order=80))


def jobs_list(key: str = "admin.jobs", base: str = f"{PREFIX}/admin/jobs") -> ListPage:
    """The jobs list of a tenant's administrators, and (another key and base) of operators."""
    return ListPage(
        key=key,
        title=_("Background jobs"),
        filterset=JOB_FILTERS,
        columns=[
            Column("name", _("Job"), kind="mono", link=True),
            Column("queue", _("Queue"), hide_on_phone=True),
            Column("status", _("Status"), kind="badge"),
            Column("attempts", _("Attempts"), kind="number", hide_on_phone=True),
            Column("run_at", _("Run at"), sortable=True, kind="datetime"),
            Column("last_error", _("Last error"), hide_on_phone=True),
        ],
        labels={"queue": _("Queue"), "status": _("Status"), "name": _("Job"), "created_at": _("Created")},
        search_param="name__contains",
        row_href=lambda j: f"{base}/{j.id}",
        empty_text=_("No background jobs match these filters."),
    )


@router.get("/jobs")
async def jobs_page(pg: JobsRead) -> Response:
    assert pg.principal
    lst = jobs_list()
    stmt = jobs.tenant_jobs_query(pg.principal.tenant_id)
    return lst.respond(pg, await lst.run(pg, stmt))


ENDPOINT_FIELDS = ["url", "event_types", "description"]


def _endpoint_form(values: dict[str, Any] | None = None) -> Form:
    return schema_form(
        EndpointCreate,
        values,
        only=ENDPOINT_FIELDS,
        labels={"url": _("URL"), "event_types": _("Events"), "description": _("Description")},
        help={"event_types": _("Comma-separated event names, or * for every event.")},
        kinds={"event_types": "text"},
    )


def endpoints_list() -> ListPage:
    return ListPage(
        key="admin.webhooks",
        title=_("Webhooks"),
        filterset=ENDPOINT_FILTERS,
        export=False,
        columns=[
            Column("url", _("URL"), link=True, kind="mono"),
            Column("event_types", _("Events"), value=lambda e: ", ".join(e.event_types)),
            Column("active", _("Status"), value=lambda e: _("Active") if e.active else _("Disabled")),
            Column("last_success_at", _("Last success"), kind="datetime", hide_on_phone=True),
        ],
        row_href=lambda e: f"{PREFIX}/admin/webhooks/{e.id}",
        empty_text=_("No webhook endpoints yet."),
    )


async def _hooks_page(
    pg: Page, form: Form | None = None, secret: str | None = None, status: int = 200
) -> Response:
    lst = endpoints_list()
    result = await lst.run(pg, select(WebhookEndpoint))
    return pg.render(
        "console/admin/webhooks.html",
        status_code=status,
        lst=lst,
        result=result,
        form=form or _endpoint_form(),
        secret=secret,
    )


@router.get("/webhooks")
async def webhooks_page(pg: HooksAdmin) -> Response:
    return await _hooks_page(pg)


@router.post("/webhooks")
async def webhook_create(pg: HooksAdmin, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, EndpointCreate, only=ENDPOINT_FIELDS)
    if isinstance(data.get("event_types"), list):
        data["event_types"] = [e.strip() for v in data["event_types"] for e in v.split(",") if e.strip()]
    form = _endpoint_form()
    body = validate_form(EndpointCreate, data, form)
    if body is not None:
        try:
            _ep, secret = await webhooks.create_endpoint(pg.session, body)  # type: ignore[arg-type]
            return await _hooks_page(pg, secret=secret)  # the signing secret is shown in this response only
        except TesseraError as exc:
            apply_error(form, exc)
    shown = dict(data)
    shown["event_types"] = ", ".join(data.get("event_types") or [])
    return await _hooks_page(pg, form=refill(form, shown), status=422)


def deliveries_list(endpoint_id: uuid.UUID) -> ListPage:
    return ListPage(
        row_href=lambda d: f"{PREFIX}/admin/webhooks/{endpoint_id}/deliveries/{d.id}",
        key="admin.webhook_deliveries",
        title=_("Deliveries"),
        filterset=DELIVERY_FILTERS,
        export=False,
        columns=[
            Column("seq", "#", sortable=True, kind="mono", link=True),
            Column("event_type", _("Event"), kind="mono"),
            Column("status", _("Status"), kind="badge"),
            Column("attempts", _("Attempts"), kind="number", hide_on_phone=True),
            Column("created_at", _("Created"), sortable=True, kind="datetime"),
        ],
        labels={"status": _("Status"), "event_type": _("Event")},
        empty_text=_("No deliveries yet."),
    )


@router.get("/webhooks/{endpoint_id}")
async def webhook_detail(endpoint_id: uuid.UUID, pg: HooksAdmin) -> Response:
    ep = await webhooks.get_endpoint(pg.session, endpoint_id)
    lst = deliveries_list(ep.id)
    result = await lst.run(pg, select(WebhookDelivery).where(WebhookDelivery.endpoint_id == ep.id))
    actions = [
        Action(
            _("Delete"),
            f"{PREFIX}/admin/webhooks/{ep.id}/delete",
            "post",
            danger=True,
            confirm=_("Delete this endpoint? Pending deliveries are cancelled."),
        )
    ]
    return pg.render("console/admin/webhook.html", ep=ep, lst=lst, result=result, actions=actions)


@router.post("/webhooks/{endpoint_id}/delete")
async def webhook_delete(endpoint_id: uuid.UUID, pg: HooksAdmin) -> Response:
    await webhooks.delete_endpoint(pg.session, endpoint_id)
    return pg.redirect(f"{PREFIX}/admin/webhooks", toast=_("Webhook endpoint deleted."))


@router.get("/webhooks/{endpoint_id}/deliveries/{delivery_id}")
async def delivery_detail(endpoint_id: uuid.UUID, delivery_id: uuid.UUID, pg: HooksAdmin) -> Response:
    ep = await webhooks.get_endpoint(pg.session, endpoint_id)
    d = await webhooks.get_delivery(pg.session, ep.id, delivery_id)
    attempts = await webhooks.attempts_of(pg.session, d.id)
    actions = [
        Action(
            _("Replay"),
            f"{PREFIX}/admin/webhooks/{ep.id}/deliveries/{d.id}/replay",
            "post",
            primary=True,
            confirm=_("Send this event to the endpoint again, as a new delivery?"),
        )
    ]
    try:
        body = json.dumps(json.loads(d.body), indent=2, ensure_ascii=False)
    except ValueError:
        body = d.body
    return pg.render(
        "console/admin/webhook_delivery.html", ep=ep, d=d, attempts=attempts, actions=actions, body=body
    )


@router.post("/webhooks/{endpoint_id}/deliveries/{delivery_id}/replay")
async def delivery_replay(endpoint_id: uuid.UUID, delivery_id: uuid.UUID, pg: HooksAdmin) -> Response:
    ep = await webhooks.get_endpoint(pg.session, endpoint_id)
    old = await webhooks.get_delivery(pg.session, ep.id, delivery_id)
    new = await webhooks.replay(pg.session, old.id)
    return pg.redirect(
        f"{PREFIX}/admin/webhooks/{ep.id}/deliveries/{new.id}", toast=_("The delivery is queued again.")
    )


async def _tenant_job(pg: Page, job_id: uuid.UUID) -> Any:
    """A job of the caller's tenant; another tenant's job is exactly as missing as no job."""
    assert pg.principal
    job = await jobs.get(pg.session, job_id)
    if job is None or job.tenant_id != pg.principal.tenant_id:
        raise JobNotFound(_("This job does not exist."))
    return job


@router.get("/jobs/{job_id}")
async def job_detail(job_id: uuid.UUID, pg: JobsRead) -> Response:
    job = await _tenant_job(pg, job_id)
    actions = []
    if pg.can("jobs:manage") and job.status in ("dead", "cancelled"):
        actions.append(Action(_("Retry"), f"{PREFIX}/admin/jobs/{job.id}/retry", "post", primary=True))
    if pg.can("jobs:manage") and job.status == "queued":
        actions.append(
            Action(
                _("Cancel"),
                f"{PREFIX}/admin/jobs/{job.id}/cancel",
                "post",
                danger=True,
                confirm=_("Cancel this job? It will not run."),
            )
        )
    return pg.render("console/admin/job.html", job=job, actions=actions)


@router.post("/jobs/{job_id}/{action}")
async def job_action(job_id: uuid.UUID, action: str, pg: JobsManage) -> Response:
    job = await _tenant_job(pg, job_id)
    try:
        if action == "retry":
            await jobs.retry(pg.session, job.id)
            toast = _("The job is queued again.")
        elif action == "cancel":
            await jobs.cancel(pg.session, job.id)
            toast = _("The job is cancelled.")
        else:
            raise JobNotFound(_("This job does not exist."))
    except jobs.JobStateError as exc:
        raise JobStateConflict(str(exc)) from None
    return pg.redirect(f"{PREFIX}/admin/jobs/{job.id}", toast=toast)
