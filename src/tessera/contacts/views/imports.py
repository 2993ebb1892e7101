"""Import wizard: upload a CSV/XLSX file → column mapping → dry run with a per-row report →
background import with live progress (htmx polling) → result and error file; past imports."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from tessera.console.components import Column, ListPage, _l
from tessera.console.i18n import _, format_number
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.contacts.importer import TARGETS
from tessera.contacts.models import DataJob
from tessera.contacts.schemas import DryRunOut, ImportOut
from tessera.contacts.service import console_data
from tessera.contacts.service import imports as imports_svc
from tessera.core.http.errors import InvalidInput, TesseraError
from tessera.core.http.middleware import register_upload_path

router = console_router("/contacts/imports")
add_template_dir(Path(__file__).resolve().parents[1] / "templates")
Importer = Annotated[Page, Depends(page("contacts:import"))]
BASE = f"{PREFIX}/contacts/imports"
register_upload_path(BASE)  # the wizard's file upload may use max_upload_bytes

register_nav(NavItem("contacts.imports", "Imports", BASE, "contacts:import", module="contacts", order=24))

TARGET_LABELS = {
    "name": _l("Name"),
    "given_name": _l("Given name"),
    "family_name": _l("Family name"),
    "phone": _l("Phone"),
    "email": _l("Email"),
    "city": _l("City"),
    "address": _l("Address"),
    "gender": _l("Gender"),
    "birthday": _l("Birthday"),
    "lifecycle_stage": _l("Lifecycle stage"),
    "source": _l("Source"),
    "language": _l("Language"),
    "tags": _l("Tags"),
}
RULE_LABELS = {
    "required": _l("required"),
    "invalid": _l("invalid"),
    "date": _l("not a date"),
    "choice": _l("not one of the choices"),
    "duplicate_in_file": _l("duplicate in the file"),
}
STATUS_LABELS = {
    "uploaded": _l("Uploaded"),
    "validated": _l("Checked"),
    "queued": _l("Queued"),
    "running": _l("Running"),
    "done": _l("Done"),
    "failed": _l("Failed"),
    "cancelled": _l("Cancelled"),
}
STEPS = [
    ("upload", _l("Upload")),
    ("map", _l("Map columns")),
    ("check", _l("Check")),
    ("import", _l("Import")),
    ("result", _l("Result")),
]
ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")


def imports_list() -> ListPage:
    return ListPage(
        key="contacts.imports",
        title=_("Imports"),
        filterset=console_data.IMPORT_FILTERS,
        export=False,
        columns=[
            Column("filename", _("File"), link=True),
            Column("status", _("Status"), value=lambda j: str(STATUS_LABELS.get(j.status, j.status))),
            Column("total_rows", _("Rows"), kind="number"),
            Column("rows_created", _("Created"), kind="number", hide_on_phone=True),
            Column("rows_updated", _("Updated"), kind="number", hide_on_phone=True),
            Column("rows_failed", _("Rejected"), kind="number"),
            Column("created_at", _("Uploaded at"), sortable=True, kind="datetime"),
        ],
        row_href=lambda j: f"{BASE}/{j.id}",
        labels={"status": _("Status"), "filename": _("File"), "created_at": _("Uploaded at")},
        options={"status": [(k, str(v)) for k, v in STATUS_LABELS.items()]},
        search_param="filename__contains",
        empty_text=_("No imports yet. Upload a file to start."),
    )


async def _index(pg: Page, error: str | None = None, status: int = 200) -> Response:
    lst = imports_list()
    result = await lst.run(pg, console_data.imports_query())
    if pg.partial and pg.request.headers.get("hx-target") == "list-contacts-imports":
        return lst.respond(pg, result)
    return pg.render(
        "contacts/imports.html", status_code=status, lst=lst, result=result, error=error, max_mb=200
    )


@router.get("")
async def imports_page(pg: Importer) -> Response:
    return await _index(pg)


@router.post("")
async def upload(pg: Importer, request: Request) -> Response:
    form = await request.form()
    file = form.get("file")
    if not isinstance(file, UploadFile) or not file.filename:
        return await _index(pg, _("Choose a CSV or XLSX file to upload."), 422)
    name = Path(file.filename).name
    if not name.lower().endswith((".csv", ".xlsx", ".txt")):
        return await _index(pg, _("The file must be a CSV or XLSX file."), 422)
    raw = await file.read()
    try:
        job = await imports_svc.upload(pg.session, name, raw)
    except TesseraError as exc:
        return await _index(pg, _(exc.message), exc.status)
    return pg.redirect(f"{BASE}/{job.id}", toast=_("File uploaded. Check the column mapping."))


def _step(job: DataJob, report: DryRunOut | None) -> str:
    if job.status in FINISHED:
        return "result"
    if job.status in ACTIVE:
        return "import"
    if report is not None or job.status == "validated":
        return "check"
    return "map"


async def _target_options(pg: Page) -> list[tuple[str, str]]:
    opts = [("skip", _("— skip this column —"))]
    opts += [
        (t, str(TARGET_LABELS.get(t, t))) for t in sorted(TARGETS, key=lambda t: list(TARGET_LABELS).index(t))
    ]
    opts += [
        (t, _("Custom field: %(label)s") % {"label": label})
        for t, label in await console_data.import_targets(pg.session)
    ]
    return opts


def _progress(job: DataJob) -> dict[str, Any]:
    out: ImportOut = imports_svc.job_out(job, job.options.get("headers"))
    eta = out.eta_seconds
    return {
        "job": job,
        "out": out,
        "status_label": STATUS_LABELS.get(job.status, job.status),
        "rate": format_number(out.rows_per_second) if out.rows_per_second is not None else "—",
        "eta": _duration(eta) if eta is not None else "—",
        "polling": job.status in ACTIVE,
        "has_errors": bool(job.result_path and Path(job.result_path).exists()),
    }


def _duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return _("%(n)s s") % {"n": s}
    return _("%(m)s min %(s)s s") % {"m": s // 60, "s": s % 60}


async def _wizard(
    pg: Page,
    job: DataJob,
    *,
    report: DryRunOut | None = None,
    mapping: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    message: str | None = None,
    status: int = 200,
) -> Response:
    headers: list[str] = list(job.options.get("headers") or list(job.mapping))
    current = mapping or {h: str(job.mapping.get(h, "skip")) for h in headers}
    errors = errors or {}
    columns = [
        {"index": i, "header": h, "target": current.get(h, "skip"), "error": errors.get(h)}
        for i, h in enumerate(headers)
    ]
    inverse = {t: h for h, t in current.items() if t != "skip"}
    step = _step(job, report)
    return pg.render(
        "contacts/import_wizard.html",
        status_code=status,
        step=step,
        steps=STEPS,
        step_keys=[k for k, _label in STEPS],
        columns=columns,
        targets=await _target_options(pg),
        report=report,
        rule_labels=RULE_LABELS,
        column_of=lambda f: inverse.get(f, f),
        message=message,
        editable=job.status in ("uploaded", "validated"),
        base=f"{BASE}/{job.id}",
        **_progress(job),
    )


@router.get("/{import_id}")
async def wizard(import_id: uuid.UUID, pg: Importer) -> Response:
    job = await console_data.get_import(pg.session, import_id)
    return await _wizard(pg, job)


@router.post("/{import_id}/check")
async def check(import_id: uuid.UUID, pg: Importer, request: Request) -> Response:
    """Save the mapping from the form, then validate every row without writing."""
    job = await console_data.get_import(pg.session, import_id)
    form = await request.form()
    headers: list[str] = list(job.options.get("headers") or [])
    mapping: dict[str, str] = {}
    for i, h in enumerate(headers):
        value = form.get(f"col_{i}")
        mapping[h] = value if isinstance(value, str) and value else "skip"
    try:
        await imports_svc.set_mapping(pg.session, job.id, mapping)
        report = await imports_svc.dry_run(pg.session, job.id)
    except InvalidInput as exc:
        field = exc.field or ""
        col = field.split(".", 1)[1] if field.startswith("mapping.") else None
        errs = {col: _(exc.message)} if col else {}
        return await _wizard(
            pg, job, mapping=mapping, errors=errs, message=None if col else _(exc.message), status=422
        )
    except TesseraError as exc:
        return await _wizard(pg, job, mapping=mapping, message=_(exc.message), status=exc.status)
    return await _wizard(pg, job, report=report)


@router.post("/{import_id}/start")
async def start(import_id: uuid.UUID, pg: Importer) -> Response:
    job = await console_data.get_import(pg.session, import_id)
    try:
        await imports_svc.start_import(pg.session, job.id)
    except TesseraError as exc:
        return await _wizard(pg, job, message=_(exc.message), status=exc.status)
    return pg.redirect(f"{BASE}/{job.id}", toast=_("Import started."))


@router.get("/{import_id}/progress")
async def progress(import_id: uuid.UUID, pg: Importer) -> Response:
    job = await console_data.get_import(pg.session, import_id)
    return pg.render("contacts/import_progress.html", base=f"{BASE}/{job.id}", **_progress(job))


@router.post("/{import_id}/cancel")
async def cancel(import_id: uuid.UUID, pg: Importer) -> Response:
    job = await console_data.get_import(pg.session, import_id)
    try:
        await imports_svc.cancel(pg.session, job.id)
    except TesseraError as exc:
        return await _wizard(pg, job, message=_(exc.message), status=exc.status)
    return pg.redirect(f"{BASE}/{job.id}", toast=_("The import is being cancelled."))


@router.get("/{import_id}/errors")
async def error_file(import_id: uuid.UUID, pg: Importer) -> Response:
    """The rejected rows with their reasons, as CSV (UTF-8 with BOM so spreadsheets read it)."""
    job = await console_data.get_import(pg.session, import_id)
    body = imports_svc.error_file(job)
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="import-{job.id}-errors.csv"'},
    )
