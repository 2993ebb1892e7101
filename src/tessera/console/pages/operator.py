"""The operator console under ``/console/operator``: tenants, background jobs of every tenant
(retry, cancel, run now), alert rules and incidents.

Platform operators are not users of a tenant, so they do not use tenant sessions: they sign in
with their email and password and carry a signed cookie (HMAC under a key derived from the master
key) holding their id, the sign-in time, the last activity time and a CSRF token. It is checked on
every request against the operator row (a disabled operator is out at once), expires after the
same idle and absolute timeouts as user sessions, and is refreshed on every page. Operator pages
run on platform sessions: they see platform tables (jobs, alert rules, incidents, tenants) and no
tenant's personal data.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from tessera.console import i18n
from tessera.console.components import (
    Action,
    Column,
    Form,
    FormField,
    ListPage,
    apply_error,
    form_data,
    refill,
    schema_form,
    validate_form,
)
from tessera.console.i18n import _
from tessera.console.pages import ops
from tessera.console.registry import NavItem, Tile
from tessera.console.web import PREFIX, Page, console_router, csrf_value, parse_uuid, redirect, render
from tessera.core import context
from tessera.core.access.principal import OperatorPrincipal
from tessera.core.crypto.keyring import get_keyring
from tessera.core.db.session import unit_of_work
from tessera.core.http.deps import SAFE_METHODS, forget_tenant_status
from tessera.core.http.errors import Conflict, CsrfFailed, NotFound, TesseraError, Unauthenticated
from tessera.core.http.listing import FilterField, FilterSet
from tessera.core.identity.passwords import verify_password
from tessera.core.jobs import service as jobs
from tessera.core.jobs.models import Job
from tessera.core.monitoring import service as monitoring
from tessera.core.monitoring.api import RuleIn
from tessera.core.monitoring.models import AlertRule, Incident
from tessera.core.tenancy import service as tenancy
from tessera.core.tenancy.models import Operator, Tenant
from tessera.settings import get_settings

router = console_router("/operator")
COOKIE = "tessera_operator"
BASE = f"{PREFIX}/operator"

NAV = [
    NavItem("operator.tenants", "Tenants", f"{BASE}/tenants", section="operator"),
    NavItem("operator.jobs", "Background jobs", f"{BASE}/jobs", section="operator"),
    NavItem("operator.incidents", "Incidents", f"{BASE}/incidents", section="operator"),
    NavItem("operator.rules", "Alert rules", f"{BASE}/alert-rules", section="operator"),
]


class OperatorSignInRequired(Unauthenticated):
    """No valid operator session: the console sends the browser to the operator sign-in page."""

    code = "operator.sign_in_required"


class OperatorJobNotFound(NotFound):
    code = "job.not_found"


class OperatorJobConflict(Conflict):
    code = "job.invalid_state"


# --- the signed operator cookie ---------------------------------------------------------------


@dataclass(frozen=True)
class Seat:
    """What the console frame needs of whoever is signed in, for an operator."""

    operator_id: uuid.UUID
    email: str
    csrf_token: str
    issued: int
    user_id: None = None

    def has(self, permission: str) -> bool:  # operators hold no tenant permission
        return False

    @property
    def actor(self) -> Any:
        return OperatorPrincipal(operator_id=self.operator_id, email=self.email).actor


def _key() -> bytes:
    master = get_keyring().masters.current
    return hmac.new(master, b"tessera-operator-console-session", hashlib.sha256).digest()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def issue_cookie(operator_id: uuid.UUID, issued: int, csrf: str, now: int | None = None) -> str:
    body = _b64(json.dumps([str(operator_id), issued, now or int(time.time()), csrf]).encode())
    sig = _b64(hmac.new(_key(), body.encode(), hashlib.sha256).digest())
    return f"{body}.{sig}"


def read_cookie(raw: str, now: int | None = None) -> tuple[uuid.UUID, int, str] | None:
    """(operator id, issued at, CSRF token) of a valid, unexpired cookie; None otherwise."""
    body, _sep, sig = raw.partition(".")
    good = _b64(hmac.new(_key(), body.encode(), hashlib.sha256).digest())
    if not sig or not hmac.compare_digest(sig, good):
        return None
    try:
        op_id, issued, last, csrf = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        operator_id = uuid.UUID(op_id)
    except (ValueError, TypeError):
        return None
    s = get_settings()
    now = now or int(time.time())
    if now - int(last) > s.session_idle_minutes * 60 or now - int(issued) > s.session_absolute_hours * 3600:
        return None
    return operator_id, int(issued), str(csrf)


@dataclass
class OperatorPage(Page):
    """A console page of the operator: renders in the frame and refreshes the session cookie."""

    seat: Seat | None = None

    def _refresh(self, resp: Response) -> Response:
        if self.seat is not None:
            resp.set_cookie(
                COOKIE,
                issue_cookie(self.seat.operator_id, self.seat.issued, self.seat.csrf_token),
                httponly=True,
                samesite="strict",
                secure=get_settings().cookie_secure,
                path=BASE,
            )
        return resp

    def render(
        self, template: str, status_code: int = 200, headers: dict[str, str] | None = None, **ctx: Any
    ) -> HTMLResponse:
        resp = super().render(template, status_code, headers, **ctx)
        self._refresh(resp)
        return resp

    def redirect(self, url: str, toast: str | None = None) -> Response:
        return self._refresh(super().redirect(url, toast))


def _activate_locale(request: Request) -> None:
    accept = request.cookies.get("tessera_locale") or request.headers.get("accept-language", "")
    i18n.activate(accept[:2] if accept else None, "UTC")


async def operator_page(request: Request) -> AsyncIterator[OperatorPage]:
    raw = request.cookies.get(COOKIE)
    found = read_cookie(raw) if raw else None
    if found is None:
        raise OperatorSignInRequired("sign in as an operator")
    operator_id, issued, csrf = found
    _activate_locale(request)
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as session:
            op = await session.get(Operator, operator_id)
            if op is None or op.status != "active":
                raise OperatorSignInRequired("this operator account is not active")
            if request.method not in SAFE_METHODS:
                sent = await csrf_value(request)
                if not secrets.compare_digest(sent, csrf):
                    raise CsrfFailed(field="csrf_token")
            seat = Seat(op.id, op.email, csrf, issued)
            context.bind(None, seat.actor)
            pg = OperatorPage(
                request,
                session,
                seat,  # type: ignore[arg-type]  # the frame only reads csrf_token, has() and user_id
                nav=list(NAV),
                user_name=op.name,
                user_email=op.email,
                tenant_name=_("Platform"),
                seat=seat,
            )
            request.state.console_page = pg
            yield pg


Op = Annotated[OperatorPage, Depends(operator_page)]


# --- sign in / out ------------------------------------------------------------------------------


def _login_form(email: str = "") -> Form:
    return Form(
        fields=[
            FormField("email", _("Email"), kind="email", value=email, required=True),
            FormField("password", _("Password"), kind="password", required=True),
        ]
    )


async def _login_page(request: Request, form: Form, status: int = 200) -> HTMLResponse:
    return render(request, "console/operator/login.html", status_code=status, form=form, page=None)


@router.get("/login")
async def login_page(request: Request) -> Response:
    _activate_locale(request)
    return await _login_page(request, _login_form())


@router.post("/login")
async def login(request: Request) -> Response:
    _activate_locale(request)
    raw = await request.form()
    email = str(raw.get("email") or "").strip().lower()
    password = str(raw.get("password") or "")
    form = _login_form(email)
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as session:
            op = (await session.execute(select(Operator).where(Operator.email == email))).scalar_one_or_none()
            ok = verify_password(password, op.password_hash if op else None)
    if op is None or not ok or op.status != "active":
        form.fields[1].error = form.errors["password"] = _("Wrong email or password.")
        return await _login_page(request, form, status=401)
    resp = redirect(request, f"{BASE}/jobs")
    resp.set_cookie(
        COOKIE,
        issue_cookie(op.id, int(time.time()), secrets.token_urlsafe(24)),
        httponly=True,
        samesite="strict",
        secure=get_settings().cookie_secure,
        path=BASE,
    )
    return resp


@router.post("/logout")
async def logout(pg: Op) -> Response:
    resp = redirect(pg.request, f"{BASE}/login")
    resp.delete_cookie(COOKIE, path=BASE)
    return resp


@router.get("")
async def home(pg: Op) -> Response:
    return pg.redirect(f"{BASE}/jobs")


# --- tenants ----------------------------------------------------------------------------------

TENANT_FILTERS = FilterSet(
    fields={
        "status": FilterField(Tenant.status, choices=("active", "suspended")),
        "slug": FilterField(Tenant.slug, operators=("eq", "contains")),
    },
    sortable={"created_at": Tenant.created_at, "slug": Tenant.slug},
    id_column=Tenant.id,
)


def tenants_list() -> ListPage:
    return ListPage(
        key="operator.tenants",
        title=_("Tenants"),
        filterset=TENANT_FILTERS,
        columns=[
            Column("slug", _("Workspace"), sortable=True, kind="mono", link=True),
            Column("name", _("Name")),
            Column("status", _("Status"), kind="badge"),
            Column("timezone", _("Time zone"), hide_on_phone=True),
            Column("created_at", _("Created"), sortable=True, kind="datetime", hide_on_phone=True),
        ],
        labels={"status": _("Status"), "slug": _("Workspace")},
        search_param="slug__contains",
        row_href=lambda t: f"{BASE}/tenants/{t.id}",
        empty_text=_("No tenants yet. Create one with `tessera tenant create`."),
    )


@router.get("/tenants")
async def tenants_page(pg: Op) -> Response:
    lst = tenants_list()
    return lst.respond(pg, await lst.run(pg, select(Tenant)), template="console/operator/list.html")


@router.get("/tenants/{tenant_id}")
async def tenant_detail(tenant_id: str, pg: Op) -> Response:
    tid = parse_uuid(tenant_id)
    tenant = await pg.session.get(Tenant, tid) if tid else None
    if tenant is None:
        raise NotFound(_("This tenant does not exist."))
    counts = dict(
        (
            await pg.session.execute(
                select(Job.status, func.count()).where(Job.tenant_id == tenant.id).group_by(Job.status)
            )
        ).all()
    )
    suspend = tenant.status == "active"
    actions = [
        Action(
            _("Suspend") if suspend else _("Resume"),
            f"{BASE}/tenants/{tenant.id}/{'suspend' if suspend else 'resume'}",
            "post",
            danger=suspend,
            confirm=_("Suspend this tenant? Its users and API keys are refused until it is resumed.")
            if suspend
            else None,
        )
    ]
    return pg.render("console/operator/tenant.html", tenant=tenant, actions=actions, job_counts=counts)


@router.post("/tenants/{tenant_id}/{action}")
async def tenant_status(tenant_id: str, action: str, pg: Op) -> Response:
    tid = parse_uuid(tenant_id)
    if tid is None or action not in ("suspend", "resume"):
        raise NotFound(_("This tenant does not exist."))
    await tenancy.set_status(pg.session, tid, "suspended" if action == "suspend" else "active")
    forget_tenant_status(tid)
    toast = _("Tenant suspended.") if action == "suspend" else _("Tenant resumed.")
    return pg.redirect(f"{BASE}/tenants/{tid}", toast=toast)


# --- jobs -------------------------------------------------------------------------------------


@router.get("/jobs")
async def jobs_page(pg: Op) -> Response:
    lst = ops.jobs_list("operator.jobs", f"{BASE}/jobs")
    stats = await jobs.queue_stats(pg.session)
    tiles = [
        Tile(
            _("Queue %(queue)s") % {"queue": st.queue},
            i18n.format_number(st.queued),
            hint=_("%(due)s due · %(running)s running · %(dead)s dead")
            % {
                "due": i18n.format_number(st.due),
                "running": i18n.format_number(st.running),
                "dead": i18n.format_number(st.dead),
            },
        )
        for st in stats
    ]
    return lst.respond(
        pg, await lst.run(pg, jobs.jobs_query()), template="console/operator/list.html", stat_tiles=tiles
    )


async def _job(pg: OperatorPage, job_id: str) -> Job:
    jid = parse_uuid(job_id)
    job = await jobs.get(pg.session, jid) if jid else None
    if job is None:
        raise OperatorJobNotFound(_("This job does not exist."))
    return job


def job_actions(job: Job) -> list[Action]:
    out = []
    if job.status in ("dead", "cancelled", "queued"):
        if job.status == "queued":
            out.append(Action(_("Run now"), f"{BASE}/jobs/{job.id}/run-now", "post", primary=True))
            out.append(
                Action(
                    _("Cancel"),
                    f"{BASE}/jobs/{job.id}/cancel",
                    "post",
                    danger=True,
                    confirm=_("Cancel this job? It will not run."),
                )
            )
        else:
            out.append(Action(_("Retry"), f"{BASE}/jobs/{job.id}/retry", "post", primary=True))
    return out


@router.get("/jobs/{job_id}")
async def job_detail(job_id: str, pg: Op) -> Response:
    job = await _job(pg, job_id)
    tenant = await pg.session.get(Tenant, job.tenant_id) if job.tenant_id else None
    return pg.render(
        "console/operator/job.html",
        job=job,
        tenant=tenant,
        actions=job_actions(job),
        payload=json.dumps(job.payload, indent=2, ensure_ascii=False, default=str),
    )


@router.post("/jobs/{job_id}/{action}")
async def job_action(job_id: str, action: str, pg: Op) -> Response:
    job = await _job(pg, job_id)
    try:
        if action == "retry":
            await jobs.retry(pg.session, job.id)
            toast = _("The job is queued again.")
        elif action == "cancel":
            await jobs.cancel(pg.session, job.id)
            toast = _("The job is cancelled.")
        elif action == "run-now":
            await jobs.run_now(pg.session, job.id)
            toast = _("The job will run now.")
        else:
            raise OperatorJobNotFound(_("This job does not exist."))
    except jobs.JobStateError as exc:
        raise OperatorJobConflict(str(exc)) from None
    return pg.redirect(f"{BASE}/jobs/{job.id}", toast=toast)


# --- incidents and alert rules ----------------------------------------------------------------

INCIDENT_FILTERS = FilterSet(
    fields={
        "status": FilterField(Incident.status, choices=("open", "resolved")),
        "opened_at": FilterField(Incident.opened_at, kind=dt.datetime, operators=("gte", "lte")),
    },
    sortable={"opened_at": Incident.opened_at},
    default_sort="-opened_at",
    id_column=Incident.id,
)


def incidents_list(rules: dict[uuid.UUID, AlertRule]) -> ListPage:
    def rule_name(i: Incident) -> str:
        r = rules.get(i.rule_id)
        return r.name if r else "—"

    def severity(i: Incident) -> str:
        r = rules.get(i.rule_id)
        return r.severity if r else "—"

    return ListPage(
        key="operator.incidents",
        title=_("Incidents"),
        filterset=INCIDENT_FILTERS,
        columns=[
            Column("rule", _("Rule"), value=rule_name),
            Column("severity", _("Severity"), kind="badge", value=severity),
            Column("status", _("Status"), kind="badge"),
            Column("value", _("Value"), kind="number", hide_on_phone=True),
            Column("last_value", _("Last value"), kind="number", hide_on_phone=True),
            Column("opened_at", _("Opened"), sortable=True, kind="datetime"),
            Column("resolved_at", _("Resolved"), kind="datetime", hide_on_phone=True),
            Column("message", _("Message"), hide_on_phone=True),
        ],
        labels={"status": _("Status"), "opened_at": _("Opened")},
        actions=[(_("Alert rules"), f"{BASE}/alert-rules")],
        empty_text=_("No incidents. Rules open one when a metric crosses its threshold."),
    )


@router.get("/incidents")
async def incidents_page(pg: Op) -> Response:
    rules = {r.id: r for r in (await pg.session.execute(select(AlertRule))).scalars()}
    lst = incidents_list(rules)
    open_count = (
        await pg.session.execute(select(func.count()).select_from(Incident).where(Incident.status == "open"))
    ).scalar_one()
    values = await monitoring.current_values(pg.session)
    tiles = [Tile(_("Open incidents"), i18n.format_number(open_count), href=f"{BASE}/incidents?status=open")]
    tiles += [
        Tile(name, "—" if v is None else i18n.format_number(round(v, 3)), hint=_("now, last 5 minutes"))
        for name, v in sorted(values.items())
    ]
    return lst.respond(
        pg,
        await lst.run(pg, select(Incident)),
        template="console/operator/incidents.html",
        stat_tiles=tiles,
    )


@router.post("/incidents/evaluate")
async def evaluate(pg: Op) -> Response:
    events = await monitoring.evaluate(pg.session)
    return pg.redirect(
        f"{BASE}/incidents",
        toast=_("Rules evaluated: %(n)s incidents opened or resolved.") % {"n": len(events)},
    )


RULE_FIELDS = ["name", "metric", "condition", "threshold", "window_minutes", "severity", "notify_url"]


def _rule_form(values: dict[str, Any] | None = None) -> Form:
    return schema_form(
        RuleIn,
        values,
        only=RULE_FIELDS,
        labels={
            "name": _("Name"),
            "metric": _("Metric"),
            "condition": _("Condition"),
            "threshold": _("Threshold"),
            "window_minutes": _("Window (minutes)"),
            "severity": _("Severity"),
            "notify_url": _("Notify URL"),
        },
        options={
            "metric": [(m, m) for m in sorted(monitoring.METRICS)],
            "condition": [(">", _("above")), ("<", _("below"))],
            "severity": [("info", _("info")), ("warning", _("warning")), ("critical", _("critical"))],
        },
        help={
            "notify_url": _("Optional: a URL that receives a JSON POST when an incident opens or resolves.")
        },
    )


def rules_list() -> ListPage:
    return ListPage(
        key="operator.rules",
        title=_("Alert rules"),
        filterset=FilterSet(
            fields={"metric": FilterField(AlertRule.metric)},
            sortable={"created_at": AlertRule.created_at},
            id_column=AlertRule.id,
        ),
        export=False,
        columns=[
            Column("name", _("Name"), link=True),
            Column("metric", _("Metric"), kind="mono"),
            Column("condition", _("Condition"), value=lambda r: f"{r.condition} {r.threshold:g}"),
            Column("window_minutes", _("Window (minutes)"), kind="number", hide_on_phone=True),
            Column("severity", _("Severity"), kind="badge"),
            Column("enabled", _("Status"), value=lambda r: _("Enabled") if r.enabled else _("Disabled")),
        ],
        labels={"metric": _("Metric")},
        options={"metric": [(m, m) for m in sorted(monitoring.METRICS)]},
        row_href=lambda r: f"{BASE}/alert-rules/{r.id}",
        empty_text=_("No alert rules yet. Add one below."),
    )


async def _rules_page(pg: OperatorPage, form: Form | None = None, status: int = 200) -> Response:
    lst = rules_list()
    result = await lst.run(pg, select(AlertRule))
    return pg.render(
        "console/operator/rules.html", status_code=status, lst=lst, result=result, form=form or _rule_form()
    )


@router.get("/alert-rules")
async def rules_page(pg: Op) -> Response:
    return await _rules_page(pg)


def _rule_data(raw: Any) -> dict[str, Any]:
    data = form_data(raw, RuleIn, only=RULE_FIELDS)
    if not data.get("notify_url"):
        data.pop("notify_url", None)
    return data


@router.post("/alert-rules")
async def rule_create(pg: Op, request: Request) -> Response:
    data = _rule_data(await request.form())
    form = _rule_form()
    body = validate_form(RuleIn, data, form)
    if body is not None:
        try:
            values = body.model_dump()
            if values.get("notify_url") is not None:
                values["notify_url"] = str(values["notify_url"])
            await monitoring.create_rule(pg.session, values)
            return pg.redirect(f"{BASE}/alert-rules", toast=_("Alert rule created."))
        except TesseraError as exc:
            apply_error(form, exc)
    return await _rules_page(pg, form=refill(form, data), status=422)


async def _rule(pg: OperatorPage, rule_id: str) -> AlertRule:
    rid = parse_uuid(rule_id)
    if rid is None:
        raise monitoring.RuleNotFound()
    return await monitoring.get_rule(pg.session, rid)


@router.get("/alert-rules/{rule_id}")
async def rule_detail(rule_id: str, pg: Op) -> Response:
    rule = await _rule(pg, rule_id)
    incidents = await pg.session.execute(
        select(Incident).where(Incident.rule_id == rule.id).order_by(Incident.opened_at.desc()).limit(20)
    )
    actions = [
        Action(
            _("Disable") if rule.enabled else _("Enable"),
            f"{BASE}/alert-rules/{rule.id}/{'disable' if rule.enabled else 'enable'}",
            "post",
        ),
        Action(
            _("Delete"),
            f"{BASE}/alert-rules/{rule.id}/delete",
            "post",
            danger=True,
            confirm=_("Delete this rule and its incidents?"),
        ),
    ]
    return pg.render(
        "console/operator/rule.html", rule=rule, actions=actions, incidents=list(incidents.scalars())
    )


@router.post("/alert-rules/{rule_id}/{action}")
async def rule_action(rule_id: str, action: str, pg: Op) -> Response:
    rule = await _rule(pg, rule_id)
    if action == "delete":
        await monitoring.delete_rule(pg.session, rule.id)
        return pg.redirect(f"{BASE}/alert-rules", toast=_("Alert rule deleted."))
    if action not in ("enable", "disable"):
        raise monitoring.RuleNotFound()
    await monitoring.update_rule(pg.session, rule.id, {"enabled": action == "enable"})
    return pg.redirect(f"{BASE}/alert-rules/{rule.id}", toast=_("Alert rule updated."))
