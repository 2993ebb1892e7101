"""Sign-in, two-factor prompt, password reset, sign-out, language switch and profile."""

from __future__ import annotations

import urllib.parse
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response

from tessera.console import i18n
from tessera.console.components import apply_error, form_data, refill, schema_form, validate_form
from tessera.console.i18n import _
from tessera.console.web import PREFIX, Page, console_router, page, public_page, render
from tessera.core import context
from tessera.core.db.session import switch_tenant
from tessera.core.http.deps import SESSION_COOKIE
from tessera.core.http.errors import TenantSuspended, TesseraError
from tessera.core.identity import auth, errors, service
from tessera.core.identity.schemas import (
    LoginRequest,
    MfaCode,
    PasswordResetConfirm,
    PasswordResetRequest,
    UserUpdate,
)
from tessera.core.tenancy import service as tenancy
from tessera.core.tenancy.models import Tenant
from tessera.settings import get_settings

router = console_router()
reset_link_router = console_router()
reset_link_router.prefix = ""  # the emailed link is <public url>/reset?token=…

Public = Annotated[Page, Depends(public_page)]
Pending = Annotated[Page, Depends(page(allow_mfa_pending=True))]
Anyone = Annotated[Page, Depends(page())]
LOCALE_COOKIE = "tessera_locale"


def _safe_next(value: str | None) -> str:
    if value and value.startswith(PREFIX + "/") and not value.startswith("//") and "\\" not in value:
        return value
    return PREFIX + "/"


def _login_form(values: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return schema_form(
        LoginRequest,
        values,
        labels={"workspace": _("Workspace"), "email": _("Email"), "password": _("Password")},
        kinds={"password": "password"},
    )


@router.get("/login")
async def login_page(pg: Public, next: str | None = None, timeout: str | None = None) -> Response:
    form = _login_form()
    note = _("You were signed out after a period of inactivity.") if timeout else None
    return pg.render("console/auth/login.html", form=form, next=_safe_next(next), note=note)


@router.post("/login")
async def login_submit(pg: Public, request: Request) -> Response:
    raw = await request.form()
    nxt = _safe_next(str(raw.get("next") or ""))
    form = _login_form()
    data = form_data(raw, LoginRequest)
    body = validate_form(LoginRequest, data, form)
    if body is None:
        return pg.render("console/auth/login.html", form=refill(form, data), next=nxt, status_code=422)
    assert isinstance(body, LoginRequest)
    try:
        tenant = await tenancy.get_by_slug(pg.session, body.workspace)
        if tenant is None:
            raise errors.InvalidCredentials()
        if tenant.status != "active":
            raise TenantSuspended(f"tenant '{tenant.slug}' is {tenant.status}")
        await switch_tenant(pg.session, tenant.id)
        req = context.current_request()
        user, row, cookie = await auth.login(
            pg.session, body.email, body.password, ip=req.ip, user_agent=req.user_agent
        )
    except TesseraError as exc:
        refill(form, data)
        form.message = (
            _("Workspace, email or password is incorrect.")
            if isinstance(exc, errors.InvalidCredentials)
            else i18n.gettext(exc.message)
        )
        return pg.render("console/auth/login.html", form=form, next=nxt, status_code=exc.status)
    target = f"{PREFIX}/login/mfa?" + urllib.parse.urlencode({"next": nxt}) if not row.mfa_passed else nxt
    resp = RedirectResponse(target, status_code=303)
    s = get_settings()
    resp.set_cookie(
        SESSION_COOKIE,
        cookie,
        httponly=True,
        samesite="lax",
        secure=s.cookie_secure,
        max_age=s.session_absolute_hours * 3600,
        path="/",
    )
    if user.locale:
        resp.set_cookie(LOCALE_COOKIE, i18n.normalise(user.locale), samesite="lax", path="/")
    return resp


def _mfa_form():  # type: ignore[no-untyped-def]
    return schema_form(
        MfaCode,
        labels={"code": _("Authentication code")},
        help={"code": _("The 6-digit code from your authenticator app, or a recovery code.")},
    )


@router.get("/login/mfa")
async def mfa_page(pg: Pending, next: str | None = None) -> Response:
    if pg.principal and pg.principal.mfa_passed:
        return pg.redirect(_safe_next(next))
    return pg.render("console/auth/mfa.html", form=_mfa_form(), next=_safe_next(next))


@router.post("/login/mfa")
async def mfa_submit(pg: Pending, request: Request) -> Response:
    raw = await request.form()
    nxt = _safe_next(str(raw.get("next") or ""))
    form = _mfa_form()
    body = validate_form(MfaCode, form_data(raw, MfaCode), form)
    if body is not None:
        assert isinstance(body, MfaCode) and pg.principal
        try:
            await auth.mfa_verify(pg.session, pg.principal.user_id, pg.principal.session_id, body.code)  # type: ignore[arg-type]
            return pg.redirect(nxt)
        except TesseraError as exc:
            apply_error(form, exc)
            form.errors["code"] = form.fields[0].error = _("That code is not valid. Try again.")
    return pg.render("console/auth/mfa.html", form=form, next=nxt, status_code=422)


@router.post("/logout")
async def logout(pg: Pending) -> Response:
    if pg.principal and pg.principal.session_id:
        await auth.logout(pg.session, pg.principal.session_id)
    resp = RedirectResponse(f"{PREFIX}/login", status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/")
    return resp


def _reset_form():  # type: ignore[no-untyped-def]
    return schema_form(PasswordResetRequest, labels={"workspace": _("Workspace"), "email": _("Email")})


@router.get("/reset")
async def reset_page(pg: Public) -> Response:
    return pg.render("console/auth/reset.html", form=_reset_form(), sent=False)


@router.post("/reset")
async def reset_submit(pg: Public, request: Request) -> Response:
    raw = await request.form()
    form = _reset_form()
    data = form_data(raw, PasswordResetRequest)
    body = validate_form(PasswordResetRequest, data, form)
    if body is None:
        return pg.render("console/auth/reset.html", form=refill(form, data), sent=False, status_code=422)
    assert isinstance(body, PasswordResetRequest)
    tenant = await tenancy.get_by_slug(pg.session, body.workspace)
    if tenant is not None and tenant.status == "active":
        await switch_tenant(pg.session, tenant.id)
        base = get_settings().public_url or str(request.base_url).rstrip("/")
        await auth.request_password_reset(pg.session, body.email, base)
    # Same answer whether or not the account exists.
    return pg.render("console/auth/reset.html", form=form, sent=True)


def _confirm_form(token: str):  # type: ignore[no-untyped-def]
    form = schema_form(
        PasswordResetConfirm,
        {"token": token},
        labels={"password": _("New password")},
        kinds={"token": "hidden"},
    )
    return form


@reset_link_router.get("/reset")
async def reset_link(token: str = "") -> Response:
    return RedirectResponse(f"{PREFIX}/reset/confirm?" + urllib.parse.urlencode({"token": token}), 303)


@router.get("/reset/confirm")
async def reset_confirm_page(pg: Public, token: str = "") -> Response:
    return pg.render("console/auth/reset_confirm.html", form=_confirm_form(token))


@router.post("/reset/confirm")
async def reset_confirm_submit(pg: Public, request: Request) -> Response:
    raw = await request.form()
    data = form_data(raw, PasswordResetConfirm)
    form = _confirm_form(str(data.get("token", "")))
    body = validate_form(PasswordResetConfirm, data, form)
    if body is not None:
        assert isinstance(body, PasswordResetConfirm)
        head = body.token.partition(".")[0]
        try:
            import uuid

            try:
                tenant_id = uuid.UUID(hex=head)
            except ValueError:
                raise errors.InvalidResetToken(field="token") from None
            tenant = await pg.session.get(Tenant, tenant_id)
            if tenant is None or tenant.status != "active":
                raise errors.InvalidResetToken(field="token")
            await switch_tenant(pg.session, tenant_id)
            await auth.confirm_password_reset(pg.session, body.token, body.password)
            return pg.redirect(f"{PREFIX}/login", toast=_("Your password has been changed. Sign in."))
        except TesseraError as exc:
            apply_error(form, exc)
            if exc.field == "token":
                form.message = _("This reset link is invalid or has expired. Request a new one.")
    return pg.render("console/auth/reset_confirm.html", form=form, status_code=422)


@router.post("/locale")
async def set_locale(pg: Anyone, request: Request) -> Response:
    raw = await request.form()
    loc = str(raw.get("locale") or "")
    if loc not in i18n.LOCALES:
        loc = "en"
    assert pg.principal
    if pg.principal.user_id:
        await service.update_user(pg.session, pg.principal.user_id, UserUpdate(locale=loc))
    i18n.activate(loc)
    resp = pg.redirect(_safe_next(str(raw.get("next") or "")))
    resp.set_cookie(LOCALE_COOKIE, loc, samesite="lax", path="/")
    return resp


@router.get("/profile")
async def profile(pg: Anyone) -> Response:
    return pg.render("console/auth/profile.html", enrol=None, codes=None, error=None)


@router.post("/profile/mfa/enrol")
async def profile_mfa_enrol(pg: Anyone) -> Response:
    assert pg.principal and pg.principal.user_id and pg.tenant
    secret, uri = await auth.mfa_enrol(pg.session, pg.principal.user_id, pg.tenant.slug)
    return pg.render(
        "console/auth/profile.html", enrol={"secret": secret, "uri": uri}, codes=None, error=None
    )


@router.post("/profile/mfa/activate")
async def profile_mfa_activate(pg: Anyone, request: Request) -> Response:
    raw = await request.form()
    assert pg.principal and pg.principal.user_id
    try:
        codes = await auth.mfa_activate(pg.session, pg.principal.user_id, str(raw.get("code") or ""))
    except TesseraError:
        return pg.render(
            "console/auth/profile.html",
            enrol={"secret": str(raw.get("secret") or ""), "uri": ""},
            codes=None,
            error=_("That code is not valid. Try again."),
            status_code=422,
        )
    return pg.render("console/auth/profile.html", enrol=None, codes=codes, error=None)


__all__ = ["render", "reset_link_router", "router"]
