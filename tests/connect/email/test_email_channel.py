"""Email through the message pipeline: API → dispatcher → SMTP (aiosmtpd over real sockets)."""

from __future__ import annotations

from email import message_from_bytes, policy
from typing import Any

import aiosmtplib
import dkim
import httpx
from tests.conftest import TenantWorld
from tests.connect.email.conftest import email_channel
from tests.connect.messaging.conftest import statuses, wait_final, wait_until

from tessera.connect.email.bounce import build_dsn
from tessera.connect.email.dkim import dns_txt_record
from tessera.connect.email.dsn import BounceMailbox
from tessera.connect.email.sink import SmtpSink


async def _email_channel(
    client: httpx.AsyncClient,
    world: TenantWorld,
    sink: SmtpSink,
    private_pem: bytes | None = None,
    **settings: Any,
) -> str:
    return await email_channel(
        client,
        world,
        sink,
        private_pem,
        **{
            "from": "Shop 商店 <news@shop.example.com>",
            "unsubscribe_mailto": "unsub@shop.example.com",
            "unsubscribe_url": "https://shop.example.com/u/{message_id}",
            "pool_size": 2,
            **settings,
        },
    )


async def _send(
    client: httpx.AsyncClient, world: TenantWorld, ch: str, to: str, **extra: Any
) -> httpx.Response:
    payload = {
        "channel": "email",
        "channel_id": ch,
        "to": to,
        "subject": "Hello {{name}}, 你好",
        "body": "Hi {{name}},\n\nYour points: {{points}}.\n",
        "html": "<html><body><p>Hi <b>{{name}}</b>, points {{points}}</p></body></html>",
        "variables": {"name": "Bob <&>", "points": "42"},
        **extra,
    }
    return await client.post("/v1/messages", json=payload, headers=world.headers("admin"))


async def _message(client: httpx.AsyncClient, world: TenantWorld, mid: str) -> dict[str, Any]:
    r = await client.get(f"/v1/messages/{mid}", headers=world.headers("admin"))
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_email_sent_through_pipeline_signed_multipart_with_unsubscribe(
    client: httpx.AsyncClient,
    tenant: TenantWorld,
    gateway: Any,
    smtp_sink: SmtpSink,
    dkim_keys: tuple[bytes, bytes],
) -> None:
    private, public = dkim_keys
    ch = await _email_channel(client, tenant, smtp_sink, private)
    r = await _send(client, tenant, ch, "Bob@Example.org")
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    await gateway()
    assert (await wait_final(tenant, 1, timeout=20)) == {"delivered": 1}
    m = await _message(client, tenant, mid)
    assert m["channel"] == "email" and m["status"] == "delivered" and m["reason"] is None
    assert [(e["kind"], e["status"]) for e in m["events"]] == [
        ("status", "accepted"),
        ("status", "queued"),
        ("status", "submitted"),
        ("receipt", "delivered"),
    ]
    assert m["events"][-1]["detail"]["smtp_code"] == 250
    assert m["submitted_at"] and m["done_at"]

    assert smtp_sink.wait_for(1)
    (received,) = smtp_sink.messages
    assert received.mail_from == "bounces@shop.example.com"
    assert received.rcpt_tos == ("bob@example.org",)
    record = dns_txt_record(public).encode()
    seen: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        seen.append(name)
        return record

    assert dkim.verify(received.data, dnsfunc=dns)
    assert seen == [b"s1._domainkey.shop.example.com."]
    assert not dkim.verify(received.data.replace(b"points 42", b"points 43"), dnsfunc=dns)

    parsed = message_from_bytes(received.data, policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in parsed.iter_parts()] == ["text/plain", "text/html"]
    assert str(parsed["Subject"]) == "Hello Bob <&>, 你好"
    assert str(parsed["From"]) == "Shop 商店 <news@shop.example.com>"
    assert parsed.get_body(("plain",)).get_content().startswith("Hi Bob <&>,")
    assert "<b>Bob &lt;&amp;&gt;</b>" in parsed.get_body(("html",)).get_content()
    hex_id = mid.replace("-", "")
    assert parsed["Message-ID"] == f"<{hex_id}@shop.example.com>"
    assert m["carrier_ids"] == [parsed["Message-ID"]]
    assert parsed["List-Unsubscribe"] == (
        f"<mailto:unsub@shop.example.com>, <https://shop.example.com/u/{hex_id}>"
    )
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_email_needs_subject_and_valid_address(
    client: httpx.AsyncClient, tenant: TenantWorld, smtp_sink: SmtpSink
) -> None:
    ch = await _email_channel(client, tenant, smtp_sink)
    r = await _send(client, tenant, ch, "bob@example.org", subject=None)
    assert r.status_code == 422
    assert (r.json()["error"]["field"], r.json()["error"]["details"]["rule"]) == ("subject", "required")
    r = await _send(client, tenant, ch, "not-an-address")
    assert r.status_code == 422 and r.json()["error"]["field"] == "to"
    r = await _send(client, tenant, ch, "bob@example.org", variables={"name": "x"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "variables.points"
    assert await statuses(tenant) == {}


async def test_hard_bounce_fails_and_blocks_the_address(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any, smtp_sink: SmtpSink
) -> None:
    smtp_sink.set_failures(hard=["gone@example.org"])
    ch = await _email_channel(client, tenant, smtp_sink)
    r = await _send(client, tenant, ch, "gone@example.org")
    assert r.status_code == 202, r.text
    mid = r.json()["id"]
    ok = (await _send(client, tenant, ch, "fine@example.org")).json()["id"]
    await gateway()
    assert (await wait_final(tenant, 2, timeout=20)) == {"failed": 1, "delivered": 1}
    m = await _message(client, tenant, mid)
    assert (m["status"], m["reason"]) == ("failed", "email.mailbox_unknown")
    assert m["events"][-1]["detail"]["smtp_code"] == 550
    assert "5.1.1" in m["events"][-1]["detail"]["smtp_reply"]
    assert (await _message(client, tenant, ok))["status"] == "delivered"

    r = await client.get("/v1/compliance/lists/block", headers=tenant.headers("admin"))
    assert r.status_code == 200
    blocked = r.json()
    assert len(blocked) == 1 and "550" in blocked[0]["note"]

    r = await _send(client, tenant, ch, "Gone@example.org")
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "message.recipient_blocked"
    assert smtp_sink.count == 1  # only fine@


async def test_soft_bounce_is_retried_with_backoff_then_delivered(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any, smtp_sink: SmtpSink
) -> None:
    smtp_sink.set_failures(soft=["busy@example.org"])
    ch = await _email_channel(client, tenant, smtp_sink)
    mid = (await _send(client, tenant, ch, "busy@example.org")).json()["id"]
    await gateway(poll_interval=0.05)

    async def retried() -> bool:
        events = (await _message(client, tenant, mid))["events"]
        return sum(1 for e in events if e["kind"] == "retry") >= 2

    await wait_until(retried, timeout=20)
    m = await _message(client, tenant, mid)
    assert m["status"] == "queued" and smtp_sink.count == 0
    retry = next(e for e in m["events"] if e["kind"] == "retry")
    assert retry["detail"]["smtp_code"] == 451 and retry["detail"]["reason"] == "email.deferred"
    assert retry["detail"]["retry_in_s"] > 0
    smtp_sink.set_failures()
    assert (await wait_final(tenant, 1, timeout=20)) == {"delivered": 1}
    m = await _message(client, tenant, mid)
    assert m["status"] == "delivered" and m["attempts"] >= 3 and m["resubmissions"] == 0
    assert smtp_sink.count == 1
    r = await client.get("/v1/compliance/lists/block", headers=tenant.headers("admin"))
    assert r.json() == []


async def test_soft_bounces_give_up_after_max_attempts(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any, smtp_sink: SmtpSink
) -> None:
    smtp_sink.set_failures(soft=["busy@example.org"])
    ch = await _email_channel(client, tenant, smtp_sink, max_attempts=2, retry_base_seconds=0.05)
    mid = (await _send(client, tenant, ch, "busy@example.org")).json()["id"]
    await gateway()
    assert (await wait_final(tenant, 1, timeout=20)) == {"failed": 1}
    m = await _message(client, tenant, mid)
    assert (m["status"], m["reason"], m["attempts"]) == ("failed", "email.deferred", 2)
    r = await client.get("/v1/compliance/lists/block", headers=tenant.headers("admin"))
    assert r.json() == []  # a soft bounce never blocks


async def test_misconfigured_channel_fails_messages_with_a_reason(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any, smtp_sink: SmtpSink
) -> None:
    ch = await _email_channel(client, tenant, smtp_sink, host="")
    mid = (await _send(client, tenant, ch, "bob@example.org")).json()["id"]
    await gateway()
    await wait_final(tenant, 1, timeout=20)
    m = await _message(client, tenant, mid)
    assert (m["status"], m["reason"]) == ("failed", "email.channel_misconfigured")


async def test_dsn_at_the_bounce_mailbox_fails_the_message_and_blocks(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any, smtp_sink: SmtpSink
) -> None:
    ch = await _email_channel(client, tenant, smtp_sink)
    mid = (await _send(client, tenant, ch, "later@example.org")).json()["id"]
    other = (await _send(client, tenant, ch, "slow@example.org")).json()["id"]
    await gateway()
    await wait_final(tenant, 2, timeout=20)
    by_rcpt = {m.rcpt_tos[0]: m for m in smtp_sink.messages}
    original = message_from_bytes(by_rcpt["later@example.org"].data, policy=policy.default)
    delayed_original = message_from_bytes(by_rcpt["slow@example.org"].data, policy=policy.default)
    mailbox = await BounceMailbox().start()
    try:
        hard = build_dsn(
            reporting_mta="mx.example.org",
            recipient="later@example.org",
            status="5.1.1",
            diagnostic="550 5.1.1 user unknown",
            original=original,  # type: ignore[arg-type]
            to="bounces@shop.example.com",
        )
        soft = build_dsn(
            reporting_mta="mx.example.org",
            recipient="slow@example.org",
            status="4.2.2",
            diagnostic="452 4.2.2 mailbox full",
            original=delayed_original,  # type: ignore[arg-type]
            to="bounces@shop.example.com",
        )
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=mailbox.port) as smtp:
            for dsn in (hard, soft):  # DSNs come with the null reverse path
                await smtp.sendmail("", ["bounces@shop.example.com"], dsn.as_bytes(policy=policy.SMTP))
        assert mailbox.processed == 2
    finally:
        await mailbox.stop()
    m = await _message(client, tenant, mid)
    assert (m["status"], m["reason"]) == ("failed", "email.mailbox_unknown")
    assert m["events"][-1]["kind"] == "bounce" and m["events"][-1]["detail"]["dsn_status"] == "5.1.1"
    o = await _message(client, tenant, other)
    assert o["status"] == "delivered" and o["events"][-1]["status"] == "delayed"
    r = await client.get("/v1/compliance/lists/block", headers=tenant.headers("admin"))
    assert len(r.json()) == 1
    r = await _send(client, tenant, ch, "later@example.org")
    assert r.status_code == 422 and r.json()["error"]["code"] == "message.recipient_blocked"


async def test_edited_channel_sends_through_its_new_server_without_a_restart(
    client: httpx.AsyncClient, tenant: TenantWorld, gateway: Any, smtp_sink: SmtpSink
) -> None:
    """host/port/credentials of an email channel are followed live, like SMS links."""
    import uuid

    h = tenant.headers("admin")
    ch = await _email_channel(client, tenant, smtp_sink)
    assert (await _send(client, tenant, ch, "first@example.org")).status_code == 202
    d = await gateway(link_refresh=0.2)
    assert (await wait_final(tenant, 1, timeout=20)) == {"delivered": 1}
    assert smtp_sink.wait_for(1)
    runner = d.runners[uuid.UUID(ch)]
    old_link = runner.link

    with SmtpSink() as other:
        r = await client.patch(
            f"/v1/channels/{ch}",
            json={"settings": {"port": other.port, "from": "Shop <hello@shop.example.com>"}},
            headers=h,
        )
        assert r.status_code == 200, r.text

        async def reloaded() -> bool:
            routes = d.routes.get(tenant.tenant_id)
            params = routes.email.get(uuid.UUID(ch)) if routes else None
            return params is not None and params[0].get("port") == other.port

        await wait_until(reloaded, timeout=10)
        mid = (await _send(client, tenant, ch, "second@example.org")).json()["id"]
        assert (await wait_final(tenant, 2, timeout=20)) == {"delivered": 2}
        assert other.wait_for(1)
        (received,) = other.messages
        assert received.rcpt_tos == ("second@example.org",)
        assert b"From: Shop <hello@shop.example.com>" in received.data
        assert smtp_sink.count == 1  # nothing more went to the old server
        m = await _message(client, tenant, mid)
        assert m["carrier_ids"] == [f"<{mid.replace('-', '')}@shop.example.com>"]
        assert runner.link is not old_link and runner.config is not None
        assert runner.config.port == other.port

        async def old_closed() -> bool:
            return old_link is not None and old_link._closed

        await wait_until(old_closed, timeout=10)
