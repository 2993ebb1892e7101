"""Request plumbing of console pages: authentication by session cookie, CSRF, locale, rendering.

Console pages use :func:`page` instead of ``tessera.core.http.deps.require`` because browsers
post plain forms: the CSRF token may come as the ``X-CSRF-Token`` header (htmx) or as the
``csrf_token`` form field. Errors raised by console routes become HTML pages (see errors.py).
"""

from __future__ import annotations

import secrets
import urllib.parse
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute, APIRouter
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.console import i18n
from tessera.console.registry import NavItem, visible_nav
from tessera.core import context
from tessera.core.access.principal import Principal
from tessera.core.http.deps import SAFE_METHODS, SESSION_COOKIE, DbSession, tenant_status
from tessera.core.http.errors import CsrfFailed, Forbidden, TenantSuspended, Unauthenticated
from tessera.core.identity import auth
from tessera.core.identity.errors import MfaRequired
from tessera.core.identity.models import User
from tessera.core.tenancy.models import Tenant

TEMPLATES = Path(__file__).parent / "templates"
PREFIX = "/console"


class ConsoleRoute(APIRoute):
    """Marks a route as a console page so that its errors render as HTML."""

    console = True


def console_router(prefix: str = "") -> APIRouter:
    """The router every context's ``views.py`` uses for its console pages."""
    return APIRouter(prefix=PREFIX + prefix, route_class=ConsoleRoute, include_in_schema=False)


def _static_url(path: str) -> str:
    return f"{PREFIX}/static/{path}"


def _build_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(
            [
                jinja2.FileSystemLoader(str(TEMPLATES)),
                jinja2.PackageLoader("tessera", "."),  # other contexts' templates/<context>/
            ]
        ),
        autoescape=jinja2.select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.install_gettext_callables(i18n.gettext, i18n.ngettext, newstyle=True)  # type: ignore[attr-defined]
    env.globals.update(static=_static_url, PREFIX=PREFIX, LOCALE_NAMES=i18n.LOCALE_NAMES)
    env.filters["datetime"] = i18n.format_datetime
    env.filters["number"] = i18n.format_number
    env.filters["urlencode_q"] = lambda d: urllib.parse.urlencode(d)
    return env


env = _build_env()


def add_template_dir(path: str | Path) -> None:
    """Let a context's ``views.py`` add its ``templates/`` folder (``"<context>/page.html"``)."""
    loader = env.loader
    assert isinstance(loader, jinja2.ChoiceLoader)
    if not any(isinstance(x, jinja2.FileSystemLoader) and str(path) in x.searchpath for x in loader.loaders):
        loaders = list(loader.loaders)
        loaders.insert(len(loaders) - 1, jinja2.FileSystemLoader(str(path)))
        loader.loaders = loaders


@dataclass
class Page:
    """Everything a console page handler needs: the request, the unit of work and who is calling."""

    request: Request
    session: AsyncSession
    principal: Principal | None
    tenant: Tenant | None = None
    user: User | None = None
    nav: list[NavItem] = field(default_factory=list)
    # Plain copies for the frame: error pages render after a rollback has expired ORM objects.
    user_name: str = ""
    user_email: str = ""
    tenant_name: str = ""

    @property
    def locale(self) -> str:
        return i18n.current_locale()

    @property
    def csrf(self) -> str:
        return (self.principal.csrf_token if self.principal else "") or ""

    @property
    def partial(self) -> bool:
        """An htmx request that swaps part of the page (not a boosted full navigation)."""
        h = self.request.headers
        return h.get("hx-request") == "true" and h.get("hx-boosted") != "true"

    def can(self, permission: str) -> bool:
        return bool(self.principal and self.principal.has(permission))

    def render(
        self, template: str, status_code: int = 200, headers: dict[str, str] | None = None, **ctx: Any
    ) -> HTMLResponse:
        return render(self.request, template, status_code=status_code, headers=headers, page=self, **ctx)

    def redirect(self, url: str, toast: str | None = None) -> Response:
        return redirect(self.request, url, toast)


def render(
    request: Request,
    template: str,
    *,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **ctx: Any,
) -> HTMLResponse:
    html = env.get_template(template).render(request=request, locale=i18n.current_locale(), **ctx)
    return HTMLResponse(html, status_code=status_code, headers=headers)


def redirect(request: Request, url: str, toast: str | None = None) -> Response:
    """A redirect that also works for htmx requests (HX-Redirect) and can carry a toast."""
    if toast:
        sep = "&" if "?" in url else "?"
        url = f"{url}{sep}{urllib.parse.urlencode({'toast': toast})}"
    if request.headers.get("hx-request") == "true":
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


async def csrf_value(request: Request) -> str:
    sent = request.headers.get("x-csrf-token")
    if sent:
        return sent
    ctype = request.headers.get("content-type", "")
    if ctype.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else ""
    return ""


async def authenticate(
    request: Request, session: AsyncSession, *, allow_mfa_pending: bool = False
) -> Principal:
    raw = request.cookies.get(SESSION_COOKIE)
    if not raw:
        raise Unauthenticated("sign in")
    pc = auth.parse_session_cookie(raw)
    if pc is None:
        raise Unauthenticated("malformed session cookie")
    status = await tenant_status(pc[0])
    if status is None:
        raise Unauthenticated("unknown tenant")
    if status[0] != "active":
        raise TenantSuspended(f"tenant '{status[1]}' is {status[0]}; contact your administrator")
    context.bind(pc[0])
    principal = await auth.authenticate_session(session, pc[1])
    if not principal.mfa_passed and not allow_mfa_pending:
        raise MfaRequired()
    if request.method not in SAFE_METHODS:
        sent = await csrf_value(request)
        if not principal.csrf_token or not secrets.compare_digest(sent, principal.csrf_token):
            raise CsrfFailed(field="csrf_token")
    context.bind(pc[0], principal.actor, principal)
    request.state.principal = principal
    return principal


async def load_frame(request: Request, session: AsyncSession, principal: Principal) -> Page:
    tenant = await session.get(Tenant, principal.tenant_id)
    user = await session.get(User, principal.user_id) if principal.user_id else None
    i18n.activate(
        principal.locale or (tenant.locale if tenant else None), tenant.timezone if tenant else None
    )
    nav = await visible_nav(session, principal)
    pg = Page(
        request,
        session,
        principal,
        tenant,
        user,
        nav,
        user_name=user.name if user else principal.actor.label,
        user_email=user.email if user else "",
        tenant_name=tenant.name if tenant else "",
    )
    request.state.console_page = pg
    return pg


def page(*permissions: str, allow_mfa_pending: bool = False) -> Callable[..., Coroutine[Any, Any, Page]]:
    """Dependency factory for console pages: signed-in user holding every permission listed."""

    async def dependency(request: Request, session: DbSession) -> Page:
        principal = await authenticate(request, session, allow_mfa_pending=allow_mfa_pending)
        pg = await load_frame(request, session, principal)
        for p in permissions:
            if not principal.has(p):
                raise Forbidden(
                    i18n.gettext("You need the “%(permission)s” permission to open this page.")
                    % {"permission": p}
                )
        return pg

    return dependency


async def public_page(request: Request, session: DbSession) -> Page:
    """Dependency of pages open without signing in (sign-in, password reset)."""
    accept = (
        request.query_params.get("lang")
        or request.cookies.get("tessera_locale")
        or request.headers.get("accept-language", "")
    )
    i18n.activate(accept[:2] if accept else None, "UTC")
    return Page(request, session, None)


def parse_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
