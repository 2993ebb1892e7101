"""Database-free pieces of the email pipeline: wire rendering, the own DKIM signer, reply mapping."""

from __future__ import annotations

from email import message_from_bytes, policy

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.connect.email.compose import render_email
from tessera.connect.email.dkim import (
    DkimKey,
    RelaxedDkimSigner,
    canonical_body_relaxed,
    dns_txt_record,
    sign_message,
)
from tessera.connect.email.pipeline import classify


def _verify(raw: bytes, public: bytes) -> bool:
    record = dns_txt_record(public).encode()
    return bool(dkim.verify(raw, dnsfunc=lambda name, timeout=5: record))


def _render(**kw: object) -> bytes:
    args: dict[str, object] = {
        "sender": "News <news@example.com>",
        "to": "bob@example.org",
        "subject": "Hello",
        "text": "Hi",
        "html": None,
        "message_id": "<m1@example.com>",
    }
    args.update(kw)
    return render_email(**args)  # type: ignore[arg-type]


def test_render_email_parses_back() -> None:
    long_subject = "Ihre Bestellung 订单 " * 12
    raw = _render(
        sender="Café 商店 <news@example.com>",
        subject=long_subject + "\r\nBcc: evil@example.net",
        text="Line one\n.starts with a dot\n\n" + "x" * 1200,
        html="<p>Grüße</p>",
        reply_to="help@example.com",
        unsubscribe_mailto="mailto:u@example.com",
        unsubscribe_url="https://example.com/u/1",
        tracking_id="t-1",
    )
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    assert b"\nBcc:" not in raw and b"\r\n\r\n" in raw
    msg = message_from_bytes(raw, policy=policy.default)
    assert str(msg["Subject"]) == long_subject + " Bcc: evil@example.net"  # one line, no new header
    assert str(msg["From"]) == "Café 商店 <news@example.com>"
    assert msg["Bcc"] is None and msg["Reply-To"] == "help@example.com"
    text = msg.get_body(("plain",)).get_content()
    assert text.startswith("Line one\n.starts with a dot\n") and "x" * 1200 in text  # long line: base64
    assert msg.get_body(("html",)).get_content() == "<p>Grüße</p>"
    assert msg["List-Unsubscribe"] == "<mailto:u@example.com>, <https://example.com/u/1>"
    with pytest.raises(ValueError):
        _render(unsubscribe_url="http://example.com/u")


def test_html_part_is_derived_from_text_when_absent() -> None:
    msg = message_from_bytes(_render(text="a < b\n\nsecond\nline"), policy=policy.default)
    assert (
        msg.get_body(("html",)).get_content()
        == "<html><body><p>a &lt; b</p><p>second<br>line</p></body></html>"
    )


def test_relaxed_signer_verified_by_dkimpy(dkim_keys: tuple[bytes, bytes]) -> None:
    private, public = dkim_keys
    signer = RelaxedDkimSigner(DkimKey("s1", "example.com", private))
    raw = _render(
        subject="Folded   subject\twith  spaces " * 4, text="trailing   \t\n\n\n\nspaces  inside\t\tline \n\n"
    )
    signed = signer.sign(raw)
    assert signed.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com; s=s1;")
    assert _verify(signed, public)
    assert not _verify(signed.replace(b"spaces  inside", b"spaces inside!"), public)
    assert not _verify(signed.replace(b"To: bob@", b"To: eve@"), public)
    # relaxed: whitespace changes in transit do not break it
    assert _verify(signed.replace(b"Subject: Folded", b"Subject:   Folded"), public)
    # a message signed by dkimpy and by this signer carry the same body hash
    ours = signed.split(b"bh=", 1)[1].split(b";", 1)[0]
    theirs = sign_message(raw, DkimKey("s1", "example.com", private)).split(b"bh=", 1)[1].split(b";", 1)[0]
    assert ours == theirs


@settings(max_examples=40, deadline=None)
@given(
    st.text(st.sampled_from(list("ab \t\r\n中")), max_size=60),
    st.text(st.sampled_from(list("xy \t")), min_size=1, max_size=30),
)
def test_relaxed_signer_verifies_any_body_and_subject(
    dkim_keys: tuple[bytes, bytes], text: str, subject: str
) -> None:
    private, public = dkim_keys
    signer = RelaxedDkimSigner(DkimKey("s1", "example.com", private))
    assert _verify(signer.sign(_render(text=text, subject=subject)), public)


def test_body_canonicalisation_rules() -> None:
    assert canonical_body_relaxed(b"") == b""
    assert canonical_body_relaxed(b"\r\n\r\n") == b""
    assert canonical_body_relaxed(b"a  \t b \r\n\r\n\r\n") == b"a b\r\n"
    assert canonical_body_relaxed(b"a\r\n \r\n") == b"a\r\n"
    assert canonical_body_relaxed(b"a") == b"a\r\n"


def test_ed25519_signature_shape_and_value() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    signed = RelaxedDkimSigner(DkimKey("e1", "example.com", pem), clock=lambda: 1_700_000_000).sign(_render())
    assert b"a=ed25519-sha256" in signed and b"t=1700000000" in signed
    # RFC 8463: the signature is over the SHA-256 of the canonical header data
    import base64
    import hashlib

    from tessera.connect.email.dkim import canonical_header_relaxed

    head = signed.split(b"\r\n\r\n", 1)[0]
    sig_field = head.split(b"\r\nFrom:", 1)[0]
    name, _, value = sig_field.partition(b":")
    b_value = value.split(b"b=")[-1]
    stripped = value[: len(value) - len(b_value)]
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        if line[:1] not in (b" ", b"\t") and b":" in line:
            n, _, v = line.partition(b":")
            fields[n.lower()] = v
        elif fields:
            last = list(fields)[-1]
            fields[last] += b"\r\n" + line
    h_list = value.split(b"h=", 1)[1].split(b";", 1)[0].split(b":")
    data = b"\r\n".join(canonical_header_relaxed(h, fields[h]) for h in h_list)
    data += b"\r\n" + canonical_header_relaxed(name, stripped)
    signature = base64.b64decode(b"".join(b_value.split()))
    key.public_key().verify(signature, hashlib.sha256(data).digest())


@pytest.mark.parametrize(
    ("code", "reply", "kind", "reason", "block"),
    [
        (250, "2.0.0 OK", "delivered", None, False),
        (550, "5.1.1 <a@b.c>: user unknown", "failed", "email.mailbox_unknown", True),
        (550, "5.2.1 mailbox disabled", "failed", "email.mailbox_disabled", True),
        (552, "5.2.2 mailbox full", "failed", "email.mailbox_full", False),
        (550, "5.7.1 message rejected as spam", "failed", "email.policy_rejected", False),
        (554, "5.6.0 content refused", "failed", "email.content_rejected", False),
        (550, "mailbox unavailable", "failed", "email.mailbox_unavailable", True),
        (554, "transaction failed", "failed", "email.transaction_failed", False),
        (451, "4.2.0 try again later", "retry", "email.deferred", False),
        (421, "connection failed: refused", "retry", "email.connection_failed", False),
    ],
)
def test_smtp_replies_map_to_stable_codes(
    code: int, reply: str, kind: str, reason: str | None, block: bool
) -> None:
    outcome = classify(code, reply)
    assert (outcome.kind, outcome.reason, outcome.block, outcome.code) == (kind, reason, block, code)


@pytest.mark.parametrize("pipelining", [True, False])
async def test_raw_transaction_refusals_and_envelope_checks(
    smtp_sink: object, pipelining: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessera.connect.email import sender
    from tessera.connect.email.sender import SmtpConfig, SmtpLink
    from tessera.connect.email.sink import SmtpSink

    monkeypatch.setattr(sender, "_CAN_PIPELINE", pipelining)
    assert isinstance(smtp_sink, SmtpSink)
    smtp_sink.set_failures(hard=["gone@example.org"], soft=["busy@example.org"])
    raw = _render(to="bob@example.org")
    async with SmtpLink(SmtpConfig("127.0.0.1", smtp_sink.port, pool_size=1)) as link:
        partial = await link.send(
            raw, sender="b@example.com", recipients=["bob@example.org", "gone@example.org"]
        )
        hard = await link.send(raw, sender="b@example.com", recipients=["gone@example.org"])
        soft = await link.send(raw, sender="b@example.com", recipients=["busy@example.org"])
        ok = await link.send(raw, sender="b@example.com", recipients=["bob@example.org"])
        with pytest.raises(ValueError):
            await link.send(raw, sender="b@example.com", recipients=["bob@example.org>\r\nRCPT TO:<x@y.z"])
    assert partial.accepted and partial.refused["gone@example.org"][0] == 550
    assert (hard.accepted, hard.smtp_code, hard.permanent) == (False, 550, True)
    assert (soft.accepted, soft.smtp_code, soft.permanent) == (False, 451, False)
    assert ok.accepted
    assert smtp_sink.wait_for(2) and smtp_sink.count == 2
    assert (
        smtp_sink.messages[0].rcpt_tos == ("bob@example.org",)
        and smtp_sink.messages[1].mail_from == "b@example.com"
    )


def test_sink_advertises_pipelining_and_answers_a_group_in_order(smtp_sink: object) -> None:
    """RFC 2920 on the wire: one write of MAIL, RCPT x2 and DATA gets four replies in order."""
    import socket

    from tessera.connect.email.sink import SmtpSink

    assert isinstance(smtp_sink, SmtpSink)
    smtp_sink.set_failures(hard=["gone@example.org"])

    with socket.create_connection(("127.0.0.1", smtp_sink.port), timeout=5) as sock:
        reader = sock.makefile("rb")

        def reply() -> list[bytes]:
            lines = [reader.readline()]
            while lines[-1][3:4] == b"-":
                lines.append(reader.readline())
            return lines

        assert reply()[0].startswith(b"220")
        sock.sendall(b"EHLO client.example.com\r\n")
        assert b"250-PIPELINING\r\n" in reply()
        sock.sendall(
            b"MAIL FROM:<b@example.com>\r\nRCPT TO:<bob@example.org>\r\n"
            b"RCPT TO:<gone@example.org>\r\nDATA\r\n"
        )
        codes = [reply()[0][:3] for _ in range(4)]
        assert codes == [b"250", b"250", b"550", b"354"]
        sock.sendall(b"Subject: x\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
        assert reply()[0][:3] == b"250" and reply()[0][:3] == b"221"
    assert smtp_sink.wait_for(1)
    message = smtp_sink.messages[0]
    assert message.rcpt_tos == ("bob@example.org",) and message.data.endswith(b"\r\n.dot\r\n")


@pytest.mark.parametrize("pipelining", [True, False])
async def test_transaction_keeps_dot_lines_and_a_connection_for_many_messages(
    smtp_sink: object, pipelining: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessera.connect.email import sender
    from tessera.connect.email.sender import SmtpConfig, SmtpLink
    from tessera.connect.email.sink import SmtpSink

    monkeypatch.setattr(sender, "_CAN_PIPELINE", pipelining)
    assert isinstance(smtp_sink, SmtpSink)
    raws = [_render(to=f"u{i}@example.org", text=f".leading dot {i}\n.\nend") for i in range(5)]
    async with SmtpLink(SmtpConfig("127.0.0.1", smtp_sink.port, pool_size=1)) as link:
        for i, raw in enumerate(raws):
            result = await link.send(raw, sender="b@example.com", recipients=[f"u{i}@example.org"])
            assert result.accepted, result
    assert smtp_sink.wait_for(5)
    assert [m.data for m in smtp_sink.messages] == raws
    text = message_from_bytes(smtp_sink.messages[0].data, policy=policy.default)
    body = text.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert body.replace("\r\n", "\n") == ".leading dot 0\n.\nend"


@pytest.mark.parametrize("pipelining", [True, False])
async def test_bare_line_endings_go_out_as_crlf(
    smtp_sink: object, pipelining: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessera.connect.email import sender
    from tessera.connect.email.sender import SmtpConfig, SmtpLink
    from tessera.connect.email.sink import SmtpSink

    monkeypatch.setattr(sender, "_CAN_PIPELINE", pipelining)
    assert isinstance(smtp_sink, SmtpSink)
    async with SmtpLink(SmtpConfig("127.0.0.1", smtp_sink.port, pool_size=1)) as link:
        for raw in (b"Subject: a\n\nline 1\n.line 2", b"Subject: b\r\n\r\nline 1\rline 2\r\n"):
            result = await link.send(raw, sender="b@example.com", recipients=["bob@example.org"])
            assert result.accepted, result
    assert smtp_sink.wait_for(2)
    assert [m.data for m in smtp_sink.messages] == [
        b"Subject: a\r\n\r\nline 1\r\n.line 2\r\n",
        b"Subject: b\r\n\r\nline 1\r\nline 2\r\n",
    ]
