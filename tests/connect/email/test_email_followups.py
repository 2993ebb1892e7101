"""Email follow-ups: one-click unsubscribe links, compliance of subject and HTML, masking of
email recipients, and the bounce mailbox started by the gateway."""

from __future__ import annotations

import asyncio
import socket
import types
import uuid
from email import message_from_bytes, policy
from typing import Any

import aiosmtplib
import httpx
import pytest
from sqlalchemy import func, select
from tests.conftest import TenantWorld
from tests.connect.email.conftest import email_channel
from tests.connect.messaging.conftest import wait_final, wait_until

from tessera.connect.compliance.html_text import html_text, replace_text
from tessera.connect.email.bounce import build_dsn
from tessera.connect.email.sink import SmtpSink
from tessera.connect.email.unsubscribe import UnsubscribeToken, make_token, read_token
from tessera.connect.models import Message
from tessera.core import context
from tessera.core.audit.models import AuditEvent
from tessera.core.db.session import unit_of_work
from tessera.settings import get_settings

PUBLIC = "https://crm.example.com"


async def _send(
    client: httpx.AsyncClient, world: TenantWorld, ch: str, to: str, **extra: Any
) -> httpx.Response:
    payload = {
        "channel": "email",
        "channel_id": ch,
        "to": to,
        "subject": "News for you",
        "body": "Hello, here is the news.",
        "html": "<p>Hello, here is <b>the news</b>.</p>",
        "class": "marketing",
        **extra,
    }
    return await client.post("/v1/messages", json=payload, headers=world.headers("admin"))


async def _count(world: TenantWorld, model: Any, *where: Any) -> int:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            return int((await s.execute(select(func.count()).select_from(model).where(*where))).scalar_one())


async def _opt_outs(client: httpx.AsyncClient, world: TenantWorld) -> list[dict[str, Any]]:
    r = await client.get("/v1/compliance/opt-outs", headers=world.headers("admin"))
    assert r.status_code == 200, r.text
    return list(r.json())


# --- 1. one-click unsubscribe ---------------------------------------------------------------


async def test_one_click_unsubscribe_link_opts_out_through_signed_token(
    client: httpx.AsyncClient,
    tenant: TenantWorld,
    other_tenant: TenantWorld,
    gateway: Any,
    smtp_sink: SmtpSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(get_settings(), "public_url", PUBLIC + "/")
    ch = await email_channel(client, tenant, smtp_sink, unsubscribe_mailto="unsub@shop.example.com")
    r = await _send(client, tenant, ch, "Bob.Smith@Example.org")
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    await gateway()
    assert (await wait_final(tenant, 1, timeout=20)) == {"delivered": 1}
    assert smtp_sink.wait_for(1)
    parsed = message_from_bytes(smtp_sink.messages[0].data, policy=policy.default)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    mailto, url = [u.strip().strip("<>") for u in str(parsed["List-Unsubscribe"]).split(",")]
    assert mailto == "mailto:unsub@shop.example.com"
    assert url.startswith(PUBLIC + "/u/")
    token = url.removeprefix(PUBLIC + "/u/")
    assert (
        "bob.smith" not in url.lower()
        and "example.org" not in url
        and "@" not in url
        and mid.replace("-", "") not in url
    )
    assert read_token(token) == UnsubscribeToken(tenant.tenant_id, uuid.UUID(mid))
    path = f"/u/{token}"

    # GET only shows the confirmation page (a link scanner unsubscribes nobody)
    r = await client.get(path)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert f'<form method="post" action="{path}">' in r.text
    assert 'name="List-Unsubscribe" value="One-Click"' in r.text
    r = await client.get(path, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert "退订" in r.text
    assert await _opt_outs(client, tenant) == []

    # forged and tampered tokens are 404 on both methods; nothing changes
    flipped = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    forged_for_other = make_token(other_tenant.tenant_id, uuid.UUID(mid))
    for bad in (flipped, "x" * 40, forged_for_other.replace(forged_for_other[5], "_", 1)):
        for method in ("GET", "POST"):
            r = await client.request(
                method,
                f"/u/{bad}",
                content=b"List-Unsubscribe=One-Click",
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            assert r.status_code == 404, (bad, method, r.text)
            assert r.json()["error"]["code"] == "unsubscribe.link_not_found"
    # a validly signed token naming this message under another tenant finds nothing there
    r = await client.post(
        f"/u/{forged_for_other}",
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "unsubscribe.link_not_found"
    assert await _opt_outs(client, tenant) == [] and await _opt_outs(client, other_tenant) == []

    # the POST needs the RFC 8058 body
    r = await client.post(path)
    assert r.status_code == 422 and r.json()["error"]["field"] == "List-Unsubscribe"

    # the one-click POST: no auth, no CSRF; 200; idempotent and audited once
    for _ in range(2):
        r = await client.post(
            path,
            content=b"List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 200, r.text
    (opt,) = await _opt_outs(client, tenant)
    assert opt["channel"] == "email" and opt["source"] == "unsubscribe_link"
    assert await _count(tenant, AuditEvent, AuditEvent.action == "compliance.opt_out") == 1

    # later sends to that address are refused, in this tenant only
    r = await _send(client, tenant, ch, "bob.smith@example.org")
    assert r.status_code == 422, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["field"]) == ("message.recipient_opted_out", "to")
    other_ch = await email_channel(client, other_tenant, smtp_sink)
    r = await _send(client, other_tenant, other_ch, "bob.smith@example.org")
    assert r.status_code == 202, r.text


async def test_unsubscribe_documented_in_openapi(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    op = spec["paths"]["/u/{token}"]
    assert set(op) == {"post"}  # the confirmation page is for people, not in the schema
    assert op["post"]["tags"] == ["email"] and "security" not in op["post"]
    assert "application/x-www-form-urlencoded" in op["post"]["requestBody"]["content"]
    assert "404" in op["post"]["responses"]


def test_token_binds_tenant_message_and_channel() -> None:
    from tessera.connect.email import unsubscribe

    tid, mid = uuid.uuid4(), uuid.uuid4()
    token = make_token(tid, mid)
    assert read_token(token) == UnsubscribeToken(tid, mid) and len(token) < 80
    assert read_token(token + "A") is None and read_token("") is None and read_token("é" * 10) is None
    key = unsubscribe._keys()[0]
    payload = bytes([1]) + tid.bytes + mid.bytes
    import base64
    import hashlib
    import hmac

    sms_mac = hmac.digest(key, b"sms|" + payload, hashlib.sha256)[:16]
    assert read_token(base64.urlsafe_b64encode(payload + sms_mac).rstrip(b"=").decode()) is None


# --- 2. compliance of subject and HTML --------------------------------------------------------


async def _word(client: httpx.AsyncClient, world: TenantWorld, word: str, action: str, **kw: Any) -> None:
    r = await client.post(
        "/v1/compliance/words", json={"word": word, "action": action, **kw}, headers=world.headers("admin")
    )
    assert r.status_code == 201, r.text


async def test_email_subject_and_html_are_checked(
    client: httpx.AsyncClient, tenant: TenantWorld, smtp_sink: SmtpSink
) -> None:
    ch = await email_channel(client, tenant, smtp_sink)
    await _word(client, tenant, "casino", "block")
    await _word(client, tenant, "lottery", "hold")
    await _word(client, tenant, "cheap", "replace", replacement="affordable")

    # block in the subject: refused naming the subject, nothing stored
    r = await _send(client, tenant, ch, "a@example.org", subject="Big CASINO night")
    assert r.status_code == 422, r.text
    assert (r.json()["error"]["code"], r.json()["error"]["field"]) == ("message.blocked_word", "subject")
    # a blocked word only in an attribute or a comment is not text: allowed
    r = await _send(
        client, tenant, ch, "a@example.org", html='<a href="https://casino.example"><!-- casino -->Hi</a>'
    )
    assert r.status_code == 202 and r.json()["status"] == "accepted", r.text

    # hold in the HTML text (split by a tag): held for review, naming nothing refused
    r = await _send(client, tenant, ch, "b@example.org", html="<p>Win the <b>lot</b>tery today</p>")
    assert r.status_code == 202 and r.json()["status"] == "held", r.text
    held = r.json()["id"]
    r = await client.get("/v1/compliance/reviews", headers=tenant.headers("admin"))
    assert [x["message_id"] for x in r.json()] == [held]
    assert r.json()[0]["to"] == "b@example.org"

    # replace in the subject and inside HTML text nodes only (tags and attributes untouched)
    r = await _send(
        client,
        tenant,
        ch,
        "c@example.org",
        subject="Cheap flights",
        html='<p class="cheap" title="cheap">cheap &amp; cheerful</p>',
    )
    assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            m = (await s.execute(select(Message).where(Message.id == uuid.UUID(r.json()["id"])))).scalar_one()
            parts = m.variables["$email"]
    assert parts["subject"] == "affordable flights"
    assert parts["html"] == '<p class="cheap" title="cheap">affordable &amp; cheerful</p>'


async def test_held_email_checked_again_with_subject_and_html_on_release(
    client: httpx.AsyncClient, tenant: TenantWorld, smtp_sink: SmtpSink
) -> None:
    ch = await email_channel(client, tenant, smtp_sink)
    await _word(client, tenant, "lottery", "hold")
    h = tenant.headers("admin")
    r = await _send(client, tenant, ch, "d@example.org", subject="Breaking news", html="<p>lottery</p>")
    first = r.json()["id"]
    r = await _send(client, tenant, ch, "e@example.org", subject="Weekly news", html="<p>lottery, cheap</p>")
    second = r.json()["id"]
    reviews = {
        x["message_id"]: x["id"] for x in (await client.get("/v1/compliance/reviews", headers=h)).json()
    }
    assert set(reviews) == {first, second}
    # words added while the messages wait: a block in a subject wins, a replace applies to the HTML
    await _word(client, tenant, "breaking", "block")
    await _word(client, tenant, "cheap", "replace", replacement="good")
    for mid in (first, second):
        r = await client.post(f"/v1/compliance/reviews/{reviews[mid]}/approve", headers=h)
        assert r.status_code == 200, r.text
    r = await client.get(f"/v1/messages/{first}", headers=h)
    assert (r.json()["status"], r.json()["reason"]) == ("rejected", "message.blocked_word")
    r = await client.get(f"/v1/messages/{second}", headers=h)
    assert r.json()["status"] == "accepted"
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            m = (await s.execute(select(Message).where(Message.id == uuid.UUID(second)))).scalar_one()
            assert m.variables["$email"] == {"subject": "Weekly news", "html": "<p>lottery, good</p>"}


@pytest.mark.parametrize("in_attribute", [True, False])  # parsed per rendering / template once
async def test_batch_checks_each_personalised_html(
    client: httpx.AsyncClient, tenant: TenantWorld, smtp_sink: SmtpSink, in_attribute: bool
) -> None:
    ch = await email_channel(client, tenant, smtp_sink)
    await _word(client, tenant, "lottery", "hold")
    await _word(client, tenant, "cheap", "replace", replacement="good")
    await _word(client, tenant, "casino", "block")
    payload = {
        "channel": "email",
        "channel_id": ch,
        "class": "marketing",
        "subject": "Offers",
        "body": "Hello {{name}}",
        "html": ('<p title="{{tag}}">' if in_attribute else "<p>{{tag}} ")
        + "Hello <b>{{name}}</b> &amp; {{extra}}</p>",
        "recipients": [
            {
                "to": "a@example.org",
                "variables": {"name": "Ann", "tag": "casino" if in_attribute else "", "extra": "x"},
            },
            {"to": "b@example.org", "variables": {"name": "Bo", "tag": "x", "extra": "lot<i>tery"}},
            {"to": "d@example.org", "variables": {"name": "Di", "tag": "x", "extra": "lot-tery"}},
            {"to": "c@example.org", "variables": {"name": "cheap & co", "tag": "cheap", "extra": "cheap"}},
        ],
    }
    r = await client.post("/v1/messages/batch", json=payload, headers=tenant.headers("admin"))
    assert r.status_code == 202, r.text
    out = r.json()
    # an attribute is not text (the block word there is ignored); a value's markup is escaped text
    assert (out["accepted"], out["held"], out["rejected"]) == (3, 1, 0), out
    assert [(x["index"], x["status"]) for x in out["results"]] == [(2, "held")]
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            m = (await s.execute(select(Message).where(Message.id == uuid.UUID(out["ids"][3])))).scalar_one()
            html = m.variables["$email"]["html"]
    start = '<p title="cheap">' if in_attribute else "<p>good "
    assert html == start + "Hello <b>good &amp; co</b> &amp; good</p>"


@pytest.mark.parametrize(
    ("template", "usable"),
    [
        ("<p>Hi {{ name }}, <i>{{x}}</i> &amp; bye</p>", True),
        ('<a href="{{x}}">{{name}}</a>', False),  # a placeholder in an attribute
        ("<p>&am{{x}}</p>", False),  # a value could complete a character reference
        ("<p>a<{{x}}</p>", False),  # a value could start a tag
        ("<style>{{x}}</style><p>{{name}}</p>", False),
        ("<!-- {{x}} --><p>{{name}}</p>", False),
    ],
)
def test_template_text_matches_parsing_each_rendering(template: str, usable: bool) -> None:
    import html as html_lib

    from tessera.connect.compliance.html_text import TemplateText
    from tessera.connect.service.templates import VARIABLE

    tt = TemplateText(template, VARIABLE)
    assert tt.usable is usable
    for values in ({"name": "Bob", "x": "p;"}, {"name": "<b>&amp;", "x": "b>c"}, {"name": "", "x": "&lt"}):
        rendered = VARIABLE.sub(lambda m, v=values: html_lib.escape(v[m.group(1)]), template)  # type: ignore[misc]
        fast = tt.text(values)
        if usable:
            assert fast is not None and fast.split() == html_text(rendered).split(), (values, rendered)
        else:
            assert fast is None


def test_html_text_strips_tags_and_replaces_in_text_nodes_only() -> None:
    source = (
        "<html><head><style>b{x:cheap}</style><script>var cheap=1</script></head>"
        '<body>\n<p data-x="cheap">1 &lt; cheap</p><!-- cheap --><br/>cheap</body></html>'
    )
    assert html_text(source).split() == ["1", "<", "cheap", "cheap"]
    out = replace_text(source, lambda t: t.replace("cheap", "x&y"))
    assert out == (
        "<html><head><style>b{x:cheap}</style><script>var cheap=1</script></head>"
        '<body>\n<p data-x="cheap">1 &lt; x&amp;y</p><!-- cheap --><br/>x&amp;y</body></html>'
    )
    assert replace_text(source, lambda t: t) is source


# --- 3. masking by channel kind ---------------------------------------------------------------


async def test_email_recipient_masked_as_email_without_pii_view(
    client: httpx.AsyncClient, tenant: TenantWorld, smtp_sink: SmtpSink
) -> None:
    ch = await email_channel(client, tenant, smtp_sink)
    r = await _send(client, tenant, ch, "john.doe@example.com")
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    member = tenant.headers("member")
    r = await client.get(f"/v1/messages/{mid}", headers=member)
    assert r.status_code == 200 and r.json()["to"] == "j***@example.com"
    r = await client.get("/v1/messages", headers=member)
    assert [x["to"] for x in r.json()["items"]] == ["j***@example.com"]
    r = await client.get(f"/v1/messages/{mid}", headers=tenant.headers("admin"))
    assert r.json()["to"] == "john.doe@example.com"


def test_review_recipient_masked_by_channel_kind() -> None:
    import datetime as dt

    from tessera.connect.compliance.schemas import ReviewOut

    no_pii = types.SimpleNamespace(has=lambda permission: False)
    row = {
        "id": uuid.uuid4(),
        "message_class": "marketing",
        "body": "b",
        "hits": [],
        "reason": "message.held_for_review",
        "status": "pending",
        "decided_by": None,
        "decided_at": None,
        "decision_note": None,
        "message_id": None,
        "created_at": dt.datetime.now(dt.UTC),
    }
    with context.tenant_scope(uuid.uuid4(), principal=no_pii):
        email = ReviewOut(**row, channel="email", to="john.doe@example.com").model_dump()
        sms = ReviewOut(**row, channel="sms", to="+8613800138000").model_dump()
    assert email["to"] == "j***@example.com" and sms["to"] == "138****8000"
    with context.tenant_scope(uuid.uuid4()):  # no principal: system code paths see the data
        assert ReviewOut(**row, channel="email", to="john.doe@example.com").model_dump()["to"] == (
            "john.doe@example.com"
        )


# --- 4. the bounce mailbox of the gateway -----------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_gateway_runs_bounce_mailbox_dsn_fails_message_and_blocks_address(
    client: httpx.AsyncClient, tenant: TenantWorld, settings: Any, smtp_sink: SmtpSink
) -> None:
    from tessera.connect.gateway import start_embedded, stop_embedded

    ch = await email_channel(client, tenant, smtp_sink)
    r = await _send(client, tenant, ch, "gone@example.org")
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    port = _free_port()
    app = types.SimpleNamespace(
        state=types.SimpleNamespace(
            settings=settings.model_copy(update={"embedded_workers": True, "bounce_smtp_port": port})
        )
    )
    await start_embedded(app)
    try:
        assert app.state.bounce_mailbox.port == port
        assert (await wait_final(tenant, 1, timeout=20)) == {"delivered": 1}
        assert smtp_sink.wait_for(1)
        original = message_from_bytes(smtp_sink.messages[0].data, policy=policy.default)
        dsn = build_dsn(
            reporting_mta="mx.example.org",
            recipient="gone@example.org",
            status="5.1.1",
            diagnostic="550 5.1.1 user unknown",
            original=original,  # type: ignore[arg-type]
            to="bounces@shop.example.com",
        )
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port) as smtp:
            await smtp.sendmail("", ["bounces@shop.example.com"], dsn.as_bytes(policy=policy.SMTP))
    finally:
        await stop_embedded(app)
    assert app.state.bounce_mailbox is None
    with pytest.raises(OSError):  # stopped with the gateway
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)

    async def failed() -> bool:
        r = await client.get(f"/v1/messages/{mid}", headers=tenant.headers("admin"))
        return bool(r.json()["status"] == "failed")

    await wait_until(failed, 5)
    r = await client.get(f"/v1/messages/{mid}", headers=tenant.headers("admin"))
    assert r.json()["reason"] == "email.mailbox_unknown"
    r = await client.get("/v1/compliance/lists/block", headers=tenant.headers("admin"))
    assert len(r.json()) == 1
    r = await _send(client, tenant, ch, "gone@example.org")
    assert r.status_code == 422 and r.json()["error"]["code"] == "message.recipient_blocked"


async def test_tessera_gateway_process_runs_and_stops_bounce_mailbox(
    client: httpx.AsyncClient, tenant: TenantWorld, smtp_sink: SmtpSink
) -> None:
    """``tessera gateway`` (a real process) sends, takes a DSN on the bounce port, and stops
    cleanly on SIGTERM, closing the port."""
    import os
    import signal
    import subprocess
    import sys

    ch = await email_channel(client, tenant, smtp_sink)
    r = await _send(client, tenant, ch, "left@example.org")
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    port = _free_port()
    log = open(os.environ.get("TESSERA_DATA_DIR", "/tmp") + "/gateway-bounce.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli", "gateway"],
        env={**os.environ, "TESSERA_BOUNCE_SMTP_PORT": str(port), "TESSERA_BOUNCE_SMTP_HOST": "127.0.0.1"},
        stderr=log,
    )
    try:
        assert (await wait_final(tenant, 1, timeout=60)) == {"delivered": 1}
        assert smtp_sink.wait_for(1)
        original = message_from_bytes(smtp_sink.messages[0].data, policy=policy.default)
        dsn = build_dsn(
            reporting_mta="mx.example.org",
            recipient="left@example.org",
            status="5.1.1",
            diagnostic="550 5.1.1 user unknown",
            original=original,  # type: ignore[arg-type]
            to="bounces@shop.example.com",
        )
        for attempt in range(50):  # the mailbox starts right after the dispatcher
            try:
                async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10) as smtp:
                    await smtp.sendmail("", ["bounces@shop.example.com"], dsn.as_bytes(policy=policy.SMTP))
                break
            except aiosmtplib.SMTPConnectError:
                assert attempt < 49 and proc.poll() is None, "bounce mailbox not listening"
                await asyncio.sleep(0.1)
        r = await client.get(f"/v1/messages/{mid}", headers=tenant.headers("admin"))
        assert (r.json()["status"], r.json()["reason"]) == ("failed", "email.mailbox_unknown")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    with pytest.raises(OSError):
        await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    r = await _send(client, tenant, ch, "left@example.org")
    assert r.status_code == 422 and r.json()["error"]["code"] == "message.recipient_blocked"


async def test_no_bounce_mailbox_without_port(settings: Any) -> None:
    from tessera.connect.email.dsn import start_bounce_mailbox

    assert settings.bounce_smtp_port is None
    assert await start_bounce_mailbox(settings) is None
