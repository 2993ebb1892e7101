"""The public one-click unsubscribe endpoint of email messages (RFC 8058): ``/u/{token}``.

Outside the tenant API's authentication (the recipient has no account; the signed token is the
credential) and without CSRF (the one-click POST comes from a mail client, not from a console
session), inside the normal error handling: a malformed, forged or tampered token, or one that
names no email message of its tenant, is a 404 ``unsubscribe.link_not_found``.

- ``POST /u/{token}`` with the form body ``List-Unsubscribe=One-Click`` opts the recipient out
  of the tenant's email (:func:`tessera.connect.email.unsubscribe.unsubscribe`) and answers 200.
- ``GET /u/{token}`` only shows a confirmation page whose button makes that POST: link scanners
  and prefetchers that follow links with GET never unsubscribe anyone.

Lives beside the console pages because the page is translated with the console's catalogues
(locale from ``Accept-Language``).
"""

from __future__ import annotations

import html
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tessera.connect.email.unsubscribe import UnsubscribeLinkNotFound, read_token, unsubscribe
from tessera.console import i18n
from tessera.console.i18n import _
from tessera.core import context
from tessera.core.db.session import unit_of_work
from tessera.core.http.errors import InvalidInput, error_responses

router = APIRouter(tags=["email"])

ONE_CLICK = "One-Click"
ACTOR = context.Actor(kind="system", label="unsubscribe link")
_NOT_FOUND = error_responses(404)


def _page(title: str, text: str, form_action: str | None = None) -> HTMLResponse:
    lang = "zh-Hans" if i18n.current_locale() == "zh_Hans" else "en"
    form = ""
    if form_action is not None:
        form = (
            f'<form method="post" action="{html.escape(form_action)}">'
            f'<input type="hidden" name="List-Unsubscribe" value="{ONE_CLICK}">'
            f'<button type="submit">{html.escape(_("Unsubscribe"))}</button></form>'
        )
    body = (
        f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{html.escape(title)}</title></head>"
        '<body style="font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem">'
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p>{form}</body></html>"
    )
    return HTMLResponse(
        body,
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        },
    )


@router.get(
    "/u/{token}",
    response_class=HTMLResponse,
    responses=_NOT_FOUND,
    summary="Unsubscribe confirmation page",
    include_in_schema=False,  # a page for people; the API is the POST below
)
async def confirm_page(token: str, request: Request) -> HTMLResponse:
    """A page whose button POSTs the one-click unsubscribe; the GET itself changes nothing."""
    i18n.activate(request.headers.get("accept-language"))
    if read_token(token) is None:
        raise UnsubscribeLinkNotFound(field="token")
    return _page(
        _("Unsubscribe"),
        _("Stop receiving these emails? Confirm with the button below."),
        form_action=f"/u/{token}",
    )


@router.post(
    "/u/{token}",
    response_class=HTMLResponse,
    responses=error_responses(404, 413, 422, 429),
    summary="One-click unsubscribe (RFC 8058)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-www-form-urlencoded": {
                    "schema": {
                        "type": "object",
                        "properties": {"List-Unsubscribe": {"type": "string", "enum": [ONE_CLICK]}},
                        "required": ["List-Unsubscribe"],
                    }
                }
            },
        }
    },
)
async def one_click(token: str, request: Request) -> HTMLResponse:
    """Opt the recipient of the message named by the signed token out of the tenant's email
    (idempotent, audited). No authentication and no CSRF token: mail clients make this POST."""
    i18n.activate(request.headers.get("accept-language"))
    parsed = read_token(token)
    if parsed is None:
        raise UnsubscribeLinkNotFound(field="token")
    raw = await request.body()
    form = parse_qs(raw.decode("utf-8", "replace"), keep_blank_values=True) if len(raw) <= 4096 else {}
    if ONE_CLICK not in form.get("List-Unsubscribe", []):
        raise InvalidInput(
            "the body must be List-Unsubscribe=One-Click", field="List-Unsubscribe", rule="one_click"
        )
    with context.tenant_scope(parsed.tenant_id, ACTOR):
        async with unit_of_work() as session:
            await unsubscribe(session, parsed.message_id)
    return _page(_("Unsubscribed"), _("You will no longer receive these emails."))
