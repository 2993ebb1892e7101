"""Demo mode: the demo tenant's SMS channel wired to the bundled SMSC simulator on loopback,
and its email channel wired to a bundled SMTP sink (aiosmtpd).

``setup(settings)`` creates (once) the SMS channel, one link to the simulator, a route, an
approved signature and an approved verification template, and an email channel with a DKIM key
pointing at the sink's port (``TESSERA_MAIL_SINK_PORT``, default 2525; ``tessera demo`` picks a
free one when that is taken). The simulator is started in-process by :func:`start_simulator`
(a lifecycle start-up hook in embedded mode); the sink by ``tessera demo`` through
:func:`start_mail_sink`, storing what it receives in the tenant's mailbox directory
(``email.sink.mailbox_dir``) that the console's sink page reads."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from sqlalchemy import select

from tessera.connect.models import Channel, Link, RouteEntry, Signature, Template
from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator
from tessera.core import context
from tessera.core.db.session import switch_tenant, unit_of_work

SIM_SYSTEM_ID = "demo"
SIM_PASSWORD = "demo"
MAIL_CHANNEL = "Demo email"
MAIL_DOMAIN = "demo.tessera.test"
MAIL_SELECTOR = "demo"
MAIL_FROM = f"hello@{MAIL_DOMAIN}"
log = logging.getLogger(__name__)


def simulator_port() -> int:
    return int(os.environ.get("TESSERA_SMSC_SIMULATOR_PORT", "2775"))


async def setup(
    settings: Any, *, tenant_slug: str = "demo", port: int | None = None, mail_port: int | None = None
) -> None:
    from tessera.core.tenancy import service as tenancy

    port = port or simulator_port()
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            tenant = await tenancy.get_by_slug(s, tenant_slug)
            if tenant is None:
                return
            await switch_tenant(s, tenant.id)
            ch = (
                await s.execute(select(Channel).where(Channel.kind == "sms", Channel.name == "Demo SMS"))
            ).scalar_one_or_none()
            if ch is None:
                ch = Channel(
                    kind="sms", name="Demo SMS", default_source="10690000", settings={"simulator": True}
                )
                s.add(ch)
                await s.flush()
                link = Link(
                    channel_id=ch.id,
                    name="SMSC simulator",
                    host="127.0.0.1",
                    port=port,
                    system_id=SIM_SYSTEM_ID,
                    password=SIM_PASSWORD,
                    window=50,
                    tps=None,
                )
                s.add(link)
                await s.flush()
                s.add(RouteEntry(channel_id=ch.id, carrier="*", link_id=link.id, priority=0, weight=100))
                s.add(Signature(text="Tessera", status="approved", is_default=True))
                s.add(
                    Template(
                        name="Verification code",
                        message_class="verification",
                        bodies={"sms": "Your verification code is {{code}}. It expires in 5 minutes."},
                        variables=["code"],
                        status="approved",
                    )
                )
            else:
                for link in (await s.execute(select(Link).where(Link.channel_id == ch.id))).scalars():
                    link.port = port
            await _email_channel(s, mail_port or mail_sink_port())
            await _compliance_examples(s)
            await s.flush()
            await switch_tenant(s, None)


def mail_sink_port() -> int:
    return int(os.environ.get("TESSERA_MAIL_SINK_PORT", "2525"))


def choose_mail_sink_port(preferred: int | None = None) -> int:
    """``preferred`` (default: :func:`mail_sink_port`) when it is free on loopback, else any free port."""
    preferred = preferred or mail_sink_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


async def _email_channel(s: Any, port: int) -> Channel:
    """The demo tenant's email channel pointing at the sink, with a DKIM key (created once)."""
    from tessera.connect.email.dkim import generate_key_pair

    ch = (
        await s.execute(select(Channel).where(Channel.kind == "email", Channel.name == MAIL_CHANNEL))
    ).scalar_one_or_none()
    if ch is None:
        private, _public = generate_key_pair(2048)
        ch = Channel(kind="email", name=MAIL_CHANNEL, default_source=MAIL_FROM, secret=private.decode())
        s.add(ch)
    ch.settings = {
        "smtp_host": "127.0.0.1",
        "smtp_port": port,
        "from_address": MAIL_FROM,
        "dkim_selector": MAIL_SELECTOR,
        "dkim_domain": MAIL_DOMAIN,
        "sink": True,
    }
    await s.flush()
    return ch


DEMO_WORDS = (
    ("加微信", "contact", "hold", None),
    ("贷款", "finance", "hold", None),
    ("赌博", "gambling", "block", None),
    ("免费", "promo", "replace", "优惠"),
)
DEMO_HELD_TO = "+8613800138000"
DEMO_HELD_BODY = "加微信 tessera_demo 领取专属福利"


async def _compliance_examples(s: Any) -> None:
    """A few tenant words and one held message for the review queue (once, on an empty list)."""
    from tessera.connect.compliance import service as compliance
    from tessera.connect.schemas import MessageIn

    if await compliance.list_words(s):
        return
    for word, category, action, replacement in DEMO_WORDS:
        await compliance.add_word(s, word=word, category=category, action=action, replacement=replacement)
    decision = await compliance.check_outbound(
        s, channel="sms", message_class="notification", to_e164_or_email=DEMO_HELD_TO, body=DEMO_HELD_BODY
    )
    if decision.verdict == "hold":
        payload = MessageIn(to=DEMO_HELD_TO, body=DEMO_HELD_BODY).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )
        await compliance.hold_for_review(
            s,
            channel="sms",
            message_class="notification",
            to=DEMO_HELD_TO,
            body=DEMO_HELD_BODY,
            decision=decision,
            payload=payload,
        )


async def _tenant_id(slug: str) -> uuid.UUID | None:
    from tessera.core.tenancy import service as tenancy

    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            tenant = await tenancy.get_by_slug(s, slug)
            return tenant.id if tenant is not None else None


async def start_mail_sink(settings: Any, *, tenant_slug: str = "demo", port: int | None = None) -> Any:
    """Start the SMTP sink of the demo tenant's email channel (its own thread); None without a tenant.

    The caller stops it (``sink.stop()``). A DKIM-signed welcome mail is sent through it the
    first time, so the console's sink page has something to show."""
    from tessera.connect.email.sink import SmtpSink, list_mailbox, mailbox_dir

    tenant_id = await _tenant_id(tenant_slug)
    if tenant_id is None:
        return None
    box = mailbox_dir(settings.data_dir, tenant_id)
    try:
        sink = SmtpSink("127.0.0.1", port or mail_sink_port(), store_dir=box, keep_in_memory=False).start()
    except (OSError, RuntimeError):  # the port was taken meanwhile: the demo starts without a sink
        log.warning("demo mail sink not started on port %s", port or mail_sink_port(), exc_info=True)
        return None
    if not list_mailbox(box, limit=1):
        try:
            await send_welcome_mail(tenant_id, sink.port)
        except Exception:  # the demo still starts; the page shows an empty sink
            log.exception("demo welcome mail not sent")
    return sink


async def send_welcome_mail(tenant_id: uuid.UUID, port: int, to: str = "owner@demo.example.com") -> bool:
    """Send one DKIM-signed message through the demo email channel's SMTP settings."""
    from tessera.connect.email.compose import compose_email
    from tessera.connect.email.dkim import DkimKey, DkimSigner
    from tessera.connect.email.sender import SmtpConfig, SmtpLink

    with context.tenant_scope(tenant_id):
        async with unit_of_work() as s:
            ch = (
                await s.execute(select(Channel).where(Channel.kind == "email", Channel.name == MAIL_CHANNEL))
            ).scalar_one_or_none()
            if ch is None or not ch.secret:
                return False
            st = dict(ch.settings or {})
            pem = ch.secret.encode()
    signer = DkimSigner(DkimKey(st["dkim_selector"], st["dkim_domain"], pem))
    msg = compose_email(
        sender=f"Tessera demo <{st['from_address']}>",
        to=to,
        subject="Welcome to the Tessera demo · 欢迎使用 Tessera 演示",
        text=(
            "This message went through the demo email channel, was signed with its DKIM key and "
            "was received by the local SMTP sink. Nothing leaves this machine.\n\n"
            "这封邮件经演示邮件渠道发送，使用其 DKIM 密钥签名，由本机 SMTP 收件器接收，不会离开本机。"
        ),
        html=(
            "<html><body><h1>Welcome to the Tessera demo</h1>"
            "<p>This message went through the demo email channel, was <b>DKIM-signed</b> and was "
            "received by the local SMTP sink.</p><p>欢迎使用 Tessera 演示。</p></body></html>"
        ),
    )
    async with SmtpLink(SmtpConfig("127.0.0.1", port, pool_size=1, timeout=10), signer=signer) as link:
        result = await link.send(msg)
    return result.accepted


_simulator: SmscSimulator | None = None


async def start_simulator(app: Any) -> None:
    global _simulator
    settings = getattr(app.state, "settings", None)
    if settings is None or settings.mode != "embedded" or not settings.embedded_workers:
        return
    if os.environ.get("TESSERA_SMSC_SIMULATOR", "1") == "0" or _simulator is not None:
        return
    sim = SmscSimulator(
        SmscConfig(
            accounts=[SmscAccount(SIM_SYSTEM_ID, SIM_PASSWORD)],
            port=simulator_port(),
            receipt_delay=0.5,
            keep_messages=False,
        )
    )
    try:
        await sim.start()
    except OSError:  # the port is taken (another process runs the simulator)
        return
    _simulator = sim


async def stop_simulator(app: Any) -> None:
    global _simulator
    if _simulator is not None:
        await _simulator.stop()
        _simulator = None
