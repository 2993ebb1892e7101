"""Administration: roles with the permission matrix, and API keys (the key is shown once)."""

from __future__ import annotations

import uuid
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from tessera.console.components import (
    Column,
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
from tessera.core.access.permissions import CATALOGUE
from tessera.core.http.errors import TesseraError
from tessera.core.identity import auth, service
from tessera.core.identity.api import KEY_FILTERS
from tessera.core.identity.models import ApiKey
from tessera.core.identity.repository import ApiKeyRepository, RoleRepository, UserRepository
from tessera.core.identity.schemas import ApiKeyCreate, RoleCreate, RoleUpdate

router = console_router("/admin")
RolesRead = Annotated[Page, Depends(page("users:read"))]
RolesAdmin = Annotated[Page, Depends(page("admin:roles"))]
KeysAdmin = Annotated[Page, Depends(page("admin:api_keys"))]

register_nav(
    NavItem("admin.roles", "Roles & permissions", f"{PREFIX}/admin/roles", "admin:roles", "admin", order=30)
)
register_nav(
    NavItem("admin.api_keys", "API keys", f"{PREFIX}/admin/api-keys", "admin:api_keys", "admin", order=40)
)


def permission_groups() -> OrderedDict[str, list[tuple[str, str]]]:
    """The catalogue grouped by context: ``{"contacts": [("contacts:read", "…"), …]}``."""
    groups: OrderedDict[str, list[tuple[str, str]]] = OrderedDict()
    for name in sorted(CATALOGUE):
        groups.setdefault(name.split(":", 1)[0], []).append((name, CATALOGUE[name]))
    return groups


def _role_form(values: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    return schema_form(
        RoleCreate,
        values,
        only=["name", "key", "description"],
        labels={"name": _("Name"), "key": _("Key"), "description": _("Description")},
        help={"key": _("Lowercase letters, digits, - and _; cannot be changed later.")},
        kinds={"description": "textarea"},
    )


@router.get("/roles")
async def roles(pg: RolesAdmin) -> Response:
    rows = await RoleRepository(pg.session).all_roles()
    counts = {r.id: await UserRepository(pg.session).count_with_role(r.id) for r in rows}
    return pg.render("console/admin/roles.html", roles=rows, counts=counts, form=_role_form())


@router.post("/roles")
async def role_create(pg: RolesAdmin, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, RoleCreate, only=["name", "key", "description"])
    form = _role_form()
    body = validate_form(RoleCreate, data, form)
    if body is not None:
        try:
            role = await service.create_role(pg.session, body)  # type: ignore[arg-type]
            return pg.redirect(
                f"{PREFIX}/admin/roles/{role.id}", toast=_("Role created. Choose its permissions.")
            )
        except TesseraError as exc:
            apply_error(form, exc)
    rows = await RoleRepository(pg.session).all_roles()
    return pg.render(
        "console/admin/roles.html", roles=rows, counts={}, form=refill(form, data), status_code=422
    )


async def _matrix(pg: Page, role_id: uuid.UUID, error: str | None = None, status: int = 200) -> Response:
    role = await service.get_role(pg.session, role_id)
    granted = set(role.permissions)
    return pg.render(
        "console/admin/role.html",
        status_code=status,
        role=role,
        groups=permission_groups(),
        granted=granted,
        error=error,
        everything="*" in granted,
    )


@router.get("/roles/{role_id}")
async def role_detail(role_id: uuid.UUID, pg: RolesAdmin) -> Response:
    return await _matrix(pg, role_id)


@router.post("/roles/{role_id}")
async def role_update(role_id: uuid.UUID, pg: RolesAdmin, request: Request) -> Response:
    raw = await request.form()
    perms = [p for p in raw.getlist("permissions") if isinstance(p, str)]
    try:
        await service.update_role(pg.session, role_id, RoleUpdate(permissions=perms))
    except TesseraError as exc:
        if exc.status == 404:
            raise
        return await _matrix(pg, role_id, _(exc.message), 422 if exc.status == 422 else exc.status)
    return pg.redirect(f"{PREFIX}/admin/roles/{role_id}", toast=_("Permissions saved."))


@router.post("/roles/{role_id}/delete")
async def role_delete(role_id: uuid.UUID, pg: RolesAdmin) -> Response:
    try:
        await service.delete_role(pg.session, role_id)
    except TesseraError as exc:
        if exc.status == 404:
            raise
        return await _matrix(pg, role_id, _(exc.message), exc.status)
    return pg.redirect(f"{PREFIX}/admin/roles", toast=_("Role deleted."))


# --- API keys -------------------------------------------------------------------------------


def keys_list() -> ListPage:
    return ListPage(
        key="admin.api_keys",
        title=_("API keys"),
        filterset=KEY_FILTERS,
        export=False,
        columns=[
            Column("name", _("Name")),
            Column("prefix", _("Key prefix"), kind="mono"),
            Column(
                "scopes",
                _("Permissions"),
                value=lambda k: (
                    ", ".join(k.scopes)
                    if len(k.scopes) <= 3
                    else _("%(n)s permissions") % {"n": len(k.scopes)}
                ),
                hide_on_phone=True,
            ),
            Column("created_at", _("Created"), sortable=True, kind="datetime"),
            Column("last_used_at", _("Last used"), kind="datetime", hide_on_phone=True),
            Column("revoked_at", _("Revoked"), kind="datetime"),
        ],
        empty_text=_("No API keys yet."),
    )


def _key_form(values: dict[str, Any] | None = None):  # type: ignore[no-untyped-def]
    return schema_form(
        ApiKeyCreate,
        values,
        only=["name"],
        labels={"name": _("Name")},
        help={"name": _("What uses this key, e.g. “billing sync”.")},
    )


async def _keys_page(
    pg: Page, *, form: Any = None, created: str | None = None, status: int = 200
) -> Response:
    lst = keys_list()
    result = await lst.run(pg, ApiKeyRepository(pg.session).select())
    return pg.render(
        "console/admin/api_keys.html",
        status_code=status,
        lst=lst,
        result=result,
        form=form or _key_form(),
        created=created,
    )


@router.get("/api-keys")
async def api_keys(pg: KeysAdmin) -> Response:
    return await _keys_page(pg)


@router.post("/api-keys")
async def api_key_create(pg: KeysAdmin, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, ApiKeyCreate, only=["name"])
    form = _key_form()
    body = validate_form(ApiKeyCreate, data, form)
    if body is not None:
        try:
            _key, secret = await auth.create_api_key(pg.session, body, pg.principal)  # type: ignore[arg-type]
            # Rendered in this response only: the secret is never stored or shown again.
            return await _keys_page(pg, created=secret)
        except TesseraError as exc:
            apply_error(form, exc)
    return await _keys_page(pg, form=refill(form, data), status=422)


@router.post("/api-keys/{key_id}/revoke")
async def api_key_revoke(key_id: uuid.UUID, pg: KeysAdmin) -> Response:
    await auth.revoke_api_key(pg.session, key_id)
    return pg.redirect(f"{PREFIX}/admin/api-keys", toast=_("API key revoked."))


__all__ = ["ApiKey", "router"]
