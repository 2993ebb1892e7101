from __future__ import annotations

from email import message_from_bytes, policy
from pathlib import Path

import dkim
import pytest

from tessera.connect.email.bounce import build_dsn, is_dsn, parse_dsn
from tessera.connect.email.compose import TRACKING_HEADER, compose_email
from tessera.connect.email.dkim import (
    DkimKey,
    DkimSigner,
    dns_record_name,
    dns_txt_record,
    generate_key_pair,
    sign_message,
)
from tessera.connect.email.sender import SmtpConfig, SmtpLink, TlsMode
from tessera.connect.email.sink import SmtpSink


@pytest.fixture(scope="module")
def keypair() -> tuple[bytes, bytes]:
    return generate_key_pair(2048)


@pytest.fixture
def sink(tmp_path: Path) -> SmtpSink:
    with SmtpSink(
        store_dir=tmp_path / "eml", hard_fail=["gone@example.org"], soft_fail=["full@example.org"]
    ) as s:
        yield s


def _message(to: str = "bob@example.org") -> object:
    return compose_email(
        sender="News <news@example.com>",
        to=to,
        subject="Hello 你好",
        text="Hi Bob",
        html="<html><body><p>Hi <b>Bob</b></p></body></html>",
        unsubscribe_mailto="unsub@example.com",
        unsubscribe_url="https://example.com/u/abc",
        tracking_id="trk-1",
        open_pixel_url="https://t.example.com/o/trk-1.gif",
    )


def test_compose_headers_and_parts() -> None:
    msg = _message()
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    for header in ("From", "To", "Subject", "Message-ID", "Date"):
        assert msg[header]
    assert msg["List-Unsubscribe"] == "<mailto:unsub@example.com>, <https://example.com/u/abc>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg[TRACKING_HEADER] == "trk-1"
    html = msg.get_body(("html",)).get_content()
    assert html.index("trk-1.gif") < html.index("</body>")
    with pytest.raises(ValueError):
        compose_email(sender="a@x.com", to="b@y.com", subject="s", text="t", unsubscribe_url="http://x")


def test_dns_record(keypair: tuple[bytes, bytes]) -> None:
    _, public = keypair
    assert dns_record_name("s1", "example.com") == "s1._domainkey.example.com"
    assert dns_txt_record(public).startswith("v=DKIM1; k=rsa; p=MII")


@pytest.mark.parametrize("use_openssl", [False, True])
def test_dkim_signature_verifies(keypair: tuple[bytes, bytes], use_openssl: bool) -> None:
    private, public = keypair
    key = DkimKey("s1", "example.com", private)
    raw = (
        DkimSigner(key, use_openssl=use_openssl).sign(_message())
        if use_openssl
        else sign_message(_message(), key)
    )
    assert raw.startswith(b"DKIM-Signature:") and b"c=relaxed/relaxed" in raw and b"a=rsa-sha256" in raw
    record = dns_txt_record(public).encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"s1._domainkey.example.com."
        return record

    assert dkim.verify(raw, dnsfunc=dns)
    tampered = raw.replace(b"Hi Bob", b"Hi Eve")
    assert not dkim.verify(tampered, dnsfunc=dns)


async def test_send_over_socket_with_dkim(
    sink: SmtpSink, keypair: tuple[bytes, bytes], tmp_path: Path
) -> None:
    private, public = keypair
    signer = DkimSigner(DkimKey("s1", "example.com", private))
    async with SmtpLink(
        SmtpConfig("127.0.0.1", sink.port, tls=TlsMode.NONE, pool_size=2), signer=signer
    ) as link:
        result = await link.send(_message())
    assert result.accepted and result.smtp_code == 250 and not result.permanent
    assert sink.wait_for(1)
    received = sink.messages[0]
    assert received.mail_from == "news@example.com" and received.rcpt_tos == ("bob@example.org",)
    parsed = message_from_bytes(received.data, policy=policy.default)
    assert parsed.get_content_type() == "multipart/alternative"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    record = dns_txt_record(public).encode()
    assert dkim.verify(received.data, dnsfunc=lambda name, timeout=5: record)
    assert len(list((tmp_path / "eml").glob("*.eml"))) == 1


async def test_hard_and_soft_bounces_are_classified(sink: SmtpSink) -> None:
    async with SmtpLink(SmtpConfig("127.0.0.1", sink.port, pool_size=1)) as link:
        hard = await link.send(_message("gone@example.org"))
        soft = await link.send(_message("full@example.org"))
        ok = await link.send(_message("fine@example.org"))  # same connection still usable
    assert (hard.accepted, hard.smtp_code, hard.permanent, hard.hard_bounce) == (False, 550, True, True)
    assert (soft.accepted, soft.smtp_code, soft.permanent, soft.soft_bounce) == (False, 451, False, True)
    assert "gone@example.org" in hard.refused
    assert ok.accepted
    assert sink.count == 1


async def test_partial_refusal_is_accepted_with_refused_list(sink: SmtpSink) -> None:
    async with SmtpLink(SmtpConfig("127.0.0.1", sink.port)) as link:
        result = await link.send(_message(), recipients=["bob@example.org", "gone@example.org"])
    assert result.accepted and result.refused["gone@example.org"][0] == 550


async def test_pool_sends_concurrently(sink: SmtpSink) -> None:
    import asyncio

    async with SmtpLink(SmtpConfig("127.0.0.1", sink.port, pool_size=4)) as link:
        results = await asyncio.gather(*(link.send(_message(f"u{i}@example.org")) for i in range(40)))
    assert all(r.accepted for r in results)
    assert sink.wait_for(40) and sink.count == 40


async def test_unreachable_server_is_a_soft_failure() -> None:
    from tessera.connect.email.sink import _free_port

    async with SmtpLink(SmtpConfig("127.0.0.1", _free_port("127.0.0.1"), timeout=2)) as link:
        result = await link.send(_message())
    assert not result.accepted and not result.permanent


def test_dsn_roundtrip_hard_and_soft() -> None:
    original = _message()
    hard = build_dsn(
        reporting_mta="mx.example.org",
        recipient="bob@example.org",
        status="5.1.1",
        diagnostic="550 5.1.1 User unknown",
        original=original,
    )
    raw = hard.as_bytes(policy=policy.SMTP)
    assert is_dsn(raw)
    (record,) = parse_dsn(raw)
    assert record.recipient == "bob@example.org" and record.action == "failed"
    assert record.status == "5.1.1" and record.permanent and record.hard
    assert record.diagnostic == "550 5.1.1 User unknown"
    assert record.original_message_id == original["Message-ID"]

    soft = build_dsn(
        reporting_mta="mx", recipient="c@example.org", status="4.2.2", diagnostic="452 4.2.2 Mailbox full"
    )
    (record,) = parse_dsn(soft.as_bytes())
    assert record.action == "delayed" and not record.permanent and record.soft


def test_parse_third_party_dsn_text() -> None:
    raw = (
        "From: MAILER-DAEMON@mx.example.net\r\n"
        "To: news@example.com\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
        "\r\n--b1\r\nContent-Type: text/plain\r\n\r\nI'm sorry to have to inform you...\r\n"
        "--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\n"
        "Final-Recipient: rfc822; a@example.net\r\nOriginal-Recipient: rfc822;A@example.net\r\n"
        "Action: failed\r\nStatus: 5.2.2\r\nDiagnostic-Code: smtp; 552 5.2.2 Over quota\r\n\r\n"
        "Final-Recipient: rfc822; b@example.net\r\nAction: delayed\r\nStatus: 4.4.1\r\n"
        "Diagnostic-Code: X-Postfix; connect to mx: Connection timed out\r\n\r\n"
        "--b1\r\nContent-Type: message/rfc822\r\n\r\nMessage-ID: <orig@example.com>\r\nSubject: x\r\n\r\nbody\r\n"
        "--b1--\r\n"
    )
    records = parse_dsn(raw)
    assert [(r.recipient, r.action, r.status, r.permanent) for r in records] == [
        ("a@example.net", "failed", "5.2.2", True),
        ("b@example.net", "delayed", "4.4.1", False),
    ]
    assert records[0].original_message_id == "<orig@example.com>"
    assert parse_dsn(_message().as_bytes()) == []
