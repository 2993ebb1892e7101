"""Email console pages: email channels with their DKIM status (``channels:manage``) and the
demo mail sink (``messages:read``), which lists what the bundled aiosmtpd sink received for
this tenant (``email.sink.mailbox_dir``).

A received message's HTML is never put into the console's own document: it is shown escaped
as source and rendered only inside ``<iframe sandbox srcdoc>`` (no scripts, no same-origin,
and the console's CSP applies to it), so it cannot run anything or reach the session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response

from tessera.connect.email.sink import list_mailbox, mailbox_dir, read_mailbox
from tessera.connect.models import Channel
from tessera.connect.service import console_compliance as reads
from tessera.connect.views.compliance import show_address
from tessera.console.components import Tab, _l
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page, parse_uuid
from tessera.core.http.errors import NotFound
from tessera.settings import get_settings

add_template_dir(Path(__file__).resolve().parents[1] / "templates")
router = console_router("/connect/email")
Manager = Annotated[Page, Depends(page("channels:manage"))]
Reader = Annotated[Page, Depends(page("messages:read"))]
BASE = f"{PREFIX}/connect/email"

register_nav(NavItem("connect.email", "Email", BASE, "messages:read", module="connect", order=270))

CHECK_MESSAGES = {
    "verified": _l("Signing works: a test message signed with this key verifies against the record above."),
    "not_configured": _l("DKIM is not set up: the channel needs a key, a selector and a domain."),
    "invalid_key": _l("The stored key is not a valid RSA private key."),
    "sign_failed": _l("Signing a test message failed."),
    "not_verified": _l("A test message was signed but its signature does not verify."),
}


def tabs(pg: Page) -> list[Tab]:
    out = []
    if pg.can("channels:manage"):
        out.append(Tab("channels", _("Channels & DKIM"), BASE))
    out.append(Tab("sink", _("Demo mail sink"), f"{BASE}/sink"))
    return out


@router.get("")
async def channels(pg: Reader) -> Response:
    if not pg.can("channels:manage"):
        return pg.redirect(f"{BASE}/sink")
    rows = await reads.email_channels(pg.session)
    return pg.render(
        "connect/email_channels.html",
        tabs=tabs(pg),
        rows=[(c, reads.dkim_status(c)) for c in rows],
    )


async def _channel(pg: Page, channel_id: str) -> Channel:
    cid = parse_uuid(channel_id)
    row = await reads.email_channel(pg.session, cid) if cid else None
    if row is None:
        raise NotFound()
    return row


def _channel_page(pg: Page, ch: Channel, check: str | None = None) -> Response:
    return pg.render(
        "connect/email_channel.html",
        ch=ch,
        dkim=reads.dkim_status(ch),
        settings=ch.settings or {},
        check=check,
        check_message=str(CHECK_MESSAGES[check]) if check else "",
    )


@router.get("/channels/{channel_id}")
async def channel_detail(channel_id: str, pg: Manager) -> Response:
    return _channel_page(pg, await _channel(pg, channel_id))


@router.post("/channels/{channel_id}/check")
async def channel_check(channel_id: str, pg: Manager) -> Response:
    ch = await _channel(pg, channel_id)
    return _channel_page(pg, ch, reads.check_dkim(ch))


# --- demo sink ---------------------------------------------------------------------------------


def _mailbox(pg: Page) -> Path:
    assert pg.principal is not None
    return mailbox_dir(get_settings().data_dir, pg.principal.tenant_id)


@router.get("/sink")
async def sink(pg: Reader) -> Response:
    mails = list_mailbox(_mailbox(pg))
    return pg.render(
        "connect/email_sink.html", tabs=tabs(pg), mails=mails, show=lambda v: show_address(pg, v)
    )


@router.get("/sink/{key}")
async def sink_message(key: str, pg: Reader) -> Response:
    mail = read_mailbox(_mailbox(pg), key)
    if mail is None:
        raise NotFound()
    return pg.render(
        "connect/email_sink_message.html",
        mail=mail,
        sender=show_address(pg, mail.mail_from) if mail.mail_from else None,
        recipients=", ".join(show_address(pg, r) for r in mail.rcpt_tos),
    )
