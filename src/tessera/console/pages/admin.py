"""Administration: users (invite, role and department, disable, reset 2FA), departments and teams."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import select

from tessera.console.components import (
    Action,
    BulkAction,
    Column,
    ListPage,
    Tab,
    TimelineEntry,
    _l,
    apply_error,
    build_tree,
    export_all,
    form_data,
    refill,
    schema_form,
    validate_form,
)
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, console_router, page
from tessera.core.access.masking import mask_email, mask_phone
from tessera.core.audit.models import AuditEvent
from tessera.core.http.errors import TesseraError
from tessera.core.identity import auth, service
from tessera.core.identity.api import USER_FILTERS
from tessera.core.identity.models import Department, Team, User
from tessera.core.identity.repository import DepartmentRepository, RoleRepository, TeamRepository
from tessera.core.identity.schemas import DepartmentCreate, TeamCreate, UserCreate, UserUpdate
from tessera.settings import get_settings

router = console_router("/admin")
UsersRead = Annotated[Page, Depends(page("users:read"))]
UsersAdmin = Annotated[Page, Depends(page("admin:users"))]
DeptRead = Annotated[Page, Depends(page("users:read"))]
DeptAdmin = Annotated[Page, Depends(page("admin:departments"))]

register_nav(NavItem("admin.users", "Users", f"{PREFIX}/admin/users", "users:read", "admin", order=10))
register_nav(
    NavItem(
        "admin.departments",
        "Departments & teams",
        f"{PREFIX}/admin/departments",
        "users:read",
        "admin",
        order=20,
    )
)

STATUS_LABELS = {"active": _l("Active"), "invited": _l("Invited"), "disabled": _l("Disabled")}


def _email(pg: Page) -> Any:
    see = pg.principal is not None and pg.principal.can_see_pii
    return lambda u: u.email if see else mask_email(u.email)


async def _role_options(pg: Page) -> list[tuple[str, str]]:
    return [(str(r.id), r.name) for r in await RoleRepository(pg.session).all_roles()]


async def _dept_options(pg: Page) -> list[tuple[str, str]]:
    rows = await DepartmentRepository(pg.session).all_ordered()
    return [(str(d.id), "· " * (d.path.count("/") - 2) + d.name) for d in rows]


async def users_list(pg: Page) -> ListPage:
    roles = await _role_options(pg)
    role_names = dict(roles)
    admin = pg.can("admin:users")
    return ListPage(
        key="admin.users",
        title=_("Users"),
        filterset=USER_FILTERS,
        columns=[
            Column("name", _("Name"), sortable=True, link=admin),
            Column("email", _("Email"), sortable=True, value=_email(pg)),
            Column("role_id", _("Role"), value=lambda u: role_names.get(str(u.role_id), "")),
            Column("status", _("Status"), kind="badge", value=lambda u: u.status),
            Column("last_login_at", _("Last sign-in"), kind="datetime", hide_on_phone=True),
            Column("created_at", _("Created"), sortable=True, kind="datetime", hide_on_phone=True),
        ],
        row_href=lambda u: f"{PREFIX}/admin/users/{u.id}",
        bulk_actions=[
            BulkAction(
                "disable",
                _("Disable"),
                f"{PREFIX}/admin/users/bulk-disable",
                confirm=_("Disable the selected users? They are signed out at once."),
                danger=True,
            )
        ]
        if admin
        else [],
        options={
            "role_id": roles,
            "department_id": await _dept_options(pg),
            "status": [(k, str(v)) for k, v in STATUS_LABELS.items()],
        },
        labels={
            "status": _("Status"),
            "role_id": _("Role"),
            "department_id": _("Department"),
            "email": _("Email"),
        },
        search_param="name__contains",
        actions=[(_("Invite user"), f"{PREFIX}/admin/users/new")] if admin else [],
        empty_text=_("No users match these filters."),
    )


@router.get("/users")
async def users(pg: UsersRead) -> Response:
    lst = await users_list(pg)
    if pg.request.query_params.get("format") == "csv":
        return await export_all(pg, lst, select(User))
    return lst.respond(pg, await lst.run(pg, select(User)))


@router.post("/users/bulk-disable")
async def users_bulk_disable(pg: UsersAdmin, request: Request) -> Response:
    raw = await request.form()
    ids = [uuid.UUID(v) for v in raw.getlist("ids") if isinstance(v, str) and _is_uuid(v)]
    done = 0
    for uid in ids:
        await service.set_user_status(pg.session, uid, "disabled")
        done += 1
    return pg.redirect(f"{PREFIX}/admin/users", toast=_("%(n)s users disabled.") % {"n": done})


def _is_uuid(v: str) -> bool:
    try:
        uuid.UUID(v)
    except ValueError:
        return False
    return True


INVITE_FIELDS = ["email", "name", "role_id", "department_id", "locale"]


async def _invite_form(pg: Page, values: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    return schema_form(
        UserCreate,
        values,
        only=INVITE_FIELDS,
        labels={
            "email": _("Email"),
            "name": _("Name"),
            "role_id": _("Role"),
            "department_id": _("Department"),
            "locale": _("Language"),
        },
        options={
            "role_id": await _role_options(pg),
            "department_id": await _dept_options(pg),
            "locale": [("en", "English"), ("zh_Hans", "简体中文")],
        },
        help={"email": _("We email an invitation with a link to choose a password.")},
    )


@router.get("/users/new")
async def invite_page(pg: UsersAdmin) -> Response:
    return pg.render("console/admin/invite.html", form=await _invite_form(pg))


@router.post("/users/new")
async def invite_submit(pg: UsersAdmin, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, UserCreate, only=INVITE_FIELDS)
    form = await _invite_form(pg)
    body = validate_form(UserCreate, data, form)
    if body is not None:
        assert isinstance(body, UserCreate) and pg.tenant
        try:
            user = await service.create_user(pg.session, body, region=pg.tenant.default_region)
            base = get_settings().public_url or str(request.base_url).rstrip("/")
            await auth.request_password_reset(pg.session, user.email, base)
            return pg.redirect(
                f"{PREFIX}/admin/users/{user.id}",
                toast=_("Invitation sent to %(email)s.") % {"email": user.email},
            )
        except TesseraError as exc:
            apply_error(form, exc)
    return pg.render("console/admin/invite.html", form=refill(form, data), status_code=422)


def _edit_form(pg: Page, user: User, roles: list[tuple[str, str]], depts: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    return schema_form(
        UserUpdate,
        {
            "name": user.name,
            "role_id": str(user.role_id),
            "department_id": str(user.department_id or ""),
            "locale": user.locale or "",
        },
        only=["name", "role_id", "department_id", "locale"],
        labels={
            "name": _("Name"),
            "role_id": _("Role"),
            "department_id": _("Department"),
            "locale": _("Language"),
        },
        options={
            "role_id": roles,
            "department_id": depts,
            "locale": [("en", "English"), ("zh_Hans", "简体中文")],
        },
    )


async def _user_page(pg: Page, user_id: uuid.UUID, tab: str, form: Any = None, status: int = 200) -> Response:
    user = await service.get_user(pg.session, user_id)
    roles = await _role_options(pg)
    depts = await _dept_options(pg)
    base = f"{PREFIX}/admin/users/{user.id}"
    admin = pg.can("admin:users")
    actions: list[Action] = []
    if admin:
        if user.status == "disabled":
            actions.append(Action(_("Enable"), f"{base}/enable", "post"))
        else:
            actions.append(
                Action(
                    _("Disable"),
                    f"{base}/disable",
                    "post",
                    danger=True,
                    confirm=_("Disable %(name)s? They are signed out at once.") % {"name": user.name},
                )
            )
        if user.totp_enabled:
            actions.append(
                Action(
                    _("Reset two-factor"),
                    f"{base}/reset-mfa",
                    "post",
                    confirm=_("Turn off two-factor authentication for %(name)s?") % {"name": user.name},
                )
            )
    timeline: list[TimelineEntry] = []
    teams: list[Team] = []
    if tab == "timeline" and pg.can("audit:read"):
        rows = (
            await pg.session.execute(
                select(AuditEvent)
                .where(AuditEvent.object_id == str(user.id))
                .order_by(AuditEvent.seq.desc())
                .limit(100)
            )
        ).scalars()
        timeline = [
            TimelineEntry(r.created_at, r.action, r.actor_label, href=f"{PREFIX}/admin/audit/{r.id}")
            for r in rows
        ]
    if tab == "related":
        ids = await TeamRepository(pg.session).team_ids_of(user.id)
        teams = await TeamRepository(pg.session).get_many(ids)
    tabs = [Tab("overview", _("Overview"), base), Tab("related", _("Teams"), f"{base}?tab=related")]
    if pg.can("audit:read"):
        tabs.insert(1, Tab("timeline", _("Timeline"), f"{base}?tab=timeline"))
    see = pg.principal is not None and pg.principal.can_see_pii
    return pg.render(
        "console/admin/user.html",
        status_code=status,
        user=user,
        tab=tab,
        tabs=tabs,
        actions=actions,
        form=form or (_edit_form(pg, user, roles, depts) if admin else None),
        role_name=dict(roles).get(str(user.role_id), ""),
        dept_name=dict(depts).get(str(user.department_id), ""),
        email=user.email if see else mask_email(user.email),
        phone=(user.phone if see else mask_phone(user.phone)) if user.phone else None,
        timeline=timeline,
        teams=teams,
        status_label=STATUS_LABELS.get(user.status, user.status),
    )


@router.get("/users/{user_id}")
async def user_detail(user_id: uuid.UUID, pg: UsersAdmin, tab: str = "overview") -> Response:
    return await _user_page(pg, user_id, tab if tab in ("overview", "timeline", "related") else "overview")


@router.post("/users/{user_id}")
async def user_update(user_id: uuid.UUID, pg: UsersAdmin, request: Request) -> Response:
    raw = await request.form()
    fields = ["name", "role_id", "department_id", "locale"]
    data = form_data(raw, UserUpdate, only=fields)
    if "department_id" not in data:
        data["department_id"] = None
    user = await service.get_user(pg.session, user_id)
    form = _edit_form(pg, user, await _role_options(pg), await _dept_options(pg))
    body = validate_form(UserUpdate, data, form)
    if body is not None:
        assert pg.tenant
        try:
            await service.update_user(pg.session, user_id, body, region=pg.tenant.default_region)  # type: ignore[arg-type]
            return pg.redirect(f"{PREFIX}/admin/users/{user_id}", toast=_("Changes saved."))
        except TesseraError as exc:
            apply_error(form, exc)
    return await _user_page(pg, user_id, "overview", refill(form, data), 422)


@router.post("/users/{user_id}/disable")
async def user_disable(user_id: uuid.UUID, pg: UsersAdmin) -> Response:
    await service.set_user_status(pg.session, user_id, "disabled")
    return pg.redirect(f"{PREFIX}/admin/users/{user_id}", toast=_("User disabled."))


@router.post("/users/{user_id}/enable")
async def user_enable(user_id: uuid.UUID, pg: UsersAdmin) -> Response:
    await service.set_user_status(pg.session, user_id, "active")
    return pg.redirect(f"{PREFIX}/admin/users/{user_id}", toast=_("User enabled."))


@router.post("/users/{user_id}/reset-mfa")
async def user_reset_mfa(user_id: uuid.UUID, pg: UsersAdmin) -> Response:
    await service.reset_user_mfa(pg.session, user_id)
    return pg.redirect(f"{PREFIX}/admin/users/{user_id}", toast=_("Two-factor authentication reset."))


# --- departments and teams ------------------------------------------------------------------


async def _dept_page(pg: Page, dept_form: Any = None, team_form: Any = None, status: int = 200) -> Response:
    depts = await DepartmentRepository(pg.session).all_ordered()
    counts: dict[uuid.UUID | None, int] = {}
    for did in (await pg.session.execute(select(User.department_id))).scalars():
        counts[did] = counts.get(did, 0) + 1
    tree = build_tree(depts, meta=lambda d: _("%(n)s users") % {"n": counts.get(d.id, 0)})
    repo = TeamRepository(pg.session)
    teams = await repo.all(repo.select().order_by(Team.name))
    dnames = {d.id: d.name for d in depts}
    opts = [(str(d.id), "· " * (d.path.count("/") - 2) + d.name) for d in depts]
    admin = pg.can("admin:departments")
    if admin and dept_form is None:
        dept_form = schema_form(
            DepartmentCreate,
            labels={"name": _("Name"), "parent_id": _("Parent")},
            options={"parent_id": opts},
        )
    if admin and team_form is None:
        team_form = schema_form(
            TeamCreate,
            only=["name", "department_id"],
            labels={"name": _("Name"), "department_id": _("Department")},
            options={"department_id": opts},
        )
    return pg.render(
        "console/admin/departments.html",
        status_code=status,
        tree=tree,
        teams=teams,
        dnames=dnames,
        dept_form=dept_form,
        team_form=team_form,
    )


@router.get("/departments")
async def departments(pg: DeptRead) -> Response:
    return await _dept_page(pg)


@router.post("/departments")
async def department_create(pg: DeptAdmin, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, DepartmentCreate)
    form = schema_form(
        DepartmentCreate,
        labels={"name": _("Name"), "parent_id": _("Parent")},
        options={"parent_id": await _dept_options(pg)},
    )
    body = validate_form(DepartmentCreate, data, form)
    if body is not None:
        try:
            await service.create_department(pg.session, body)  # type: ignore[arg-type]
            return pg.redirect(f"{PREFIX}/admin/departments", toast=_("Department created."))
        except TesseraError as exc:
            apply_error(form, exc)
    return await _dept_page(pg, dept_form=refill(form, data), status=422)


@router.post("/teams")
async def team_create(pg: DeptAdmin, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, TeamCreate, only=["name", "department_id"])
    form = schema_form(
        TeamCreate,
        only=["name", "department_id"],
        labels={"name": _("Name"), "department_id": _("Department")},
        options={"department_id": await _dept_options(pg)},
    )
    body = validate_form(TeamCreate, data, form)
    if body is not None:
        try:
            await service.create_team(pg.session, body)  # type: ignore[arg-type]
            return pg.redirect(f"{PREFIX}/admin/departments", toast=_("Team created."))
        except TesseraError as exc:
            apply_error(form, exc)
    return await _dept_page(pg, team_form=refill(form, data), status=422)


__all__ = ["Department", "router"]
