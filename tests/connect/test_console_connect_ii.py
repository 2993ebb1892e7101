"""Connect II console pages: compliance, inbound, verification statistics, email and the sink."""

from __future__ import annotations

import datetime as dt
import re
import socket
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from tests.conftest import TenantWorld
from tests.connect.messaging.conftest import setup_sms
from tests.console.conftest import Browser

from tessera.connect.compliance import service as compliance
from tessera.connect.compliance.models import ComplianceSettings, Review
from tessera.connect.email.compose import compose_email
from tessera.connect.email.dkim import generate_key_pair
from tessera.connect.email.sender import SmtpConfig, SmtpLink
from tessera.connect.email.sink import SmtpSink, mailbox_dir
from tessera.connect.inbound.models import AutoReplyRule
from tessera.connect.models import Channel, Message
from tessera.connect.schemas import MessageIn
from tessera.connect.verify.models import Verification
from tessera.core import context
from tessera.core.audit.models import AuditEvent
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work

TO = "+8613912345678"
PAGES = [
    "/console/connect/compliance",
    "/console/connect/compliance/test",
    "/console/connect/compliance/reviews",
    "/console/connect/compliance/lists",
    "/console/connect/compliance/opt-outs",
    "/console/connect/compliance/settings",
    "/console/connect/inbound",
    "/console/connect/inbound/rules",
    "/console/connect/inbound/keywords",
    "/console/connect/verify",
    "/console/connect/email",
    "/console/connect/email/sink",
]
# The permission each page needs, and which built-in roles hold it.
NEEDS = {
    "/console/connect/compliance": "compliance",
    "/console/connect/inbound": "messages",
    "/console/connect/inbound/rules": "channels",
    "/console/connect/inbound/keywords": "compliance",
    "/console/connect/verify": "messages",
    "/console/connect/email": "messages",
    "/console/connect/email/sink": "messages",
}
HOLDERS = {
    "compliance": {"owner", "admin"},
    "channels": {"owner", "admin"},
    "messages": {"owner", "admin", "manager", "member", "read-only"},
}


def _needs(url: str) -> str:
    best = max((p for p in NEEDS if url.startswith(p)), key=len)
    return NEEDS[best]


@pytest.fixture
async def browser(app: Any) -> Any:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        yield Browser(c)


async def _in(world: TenantWorld, fn: Any) -> Any:
    with context.tenant_scope(world.tenant_id):
        async with unit_of_work() as s:
            return await fn(s)


async def _hold(world: TenantWorld, body: str) -> uuid.UUID:
    async def go(s: Any) -> uuid.UUID:
        d = await compliance.check_outbound(
            s, channel="sms", message_class="notification", to_e164_or_email=TO, body=body
        )
        assert d.verdict == "hold", d
        payload = MessageIn(to=TO, body=body).model_dump(mode="json", by_alias=True, exclude_none=True)
        review = await compliance.hold_for_review(
            s, channel="sms", message_class="notification", to=TO, body=body, decision=d, payload=payload
        )
        return review.id

    return await _in(world, go)


async def _review(world: TenantWorld, rid: uuid.UUID) -> Review:
    return await _in(world, lambda s: compliance.get_review(s, rid))


async def _audit(world: TenantWorld, action: str) -> int:
    async def go(s: Any) -> int:
        return len(list((await s.execute(select(AuditEvent).where(AuditEvent.action == action))).scalars()))

    return await _in(world, go)


# --- pages per role ----------------------------------------------------------------------------


async def test_pages_render_per_role_and_refuse_without_permission(app: Any, tenant: TenantWorld) -> None:
    for role in ("owner", "admin", "manager", "member", "read-only"):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        ) as c:
            b = Browser(c)
            await b.login(tenant, role)
            for url in PAGES:
                r = await b.get(url, follow_redirects=False)
                allowed = role in HOLDERS[_needs(url)]
                if url == "/console/connect/email" and allowed and role not in HOLDERS["channels"]:
                    assert r.status_code == 303 and r.headers["location"].endswith("/email/sink"), url
                    continue
                if allowed:
                    assert r.status_code == 200, (role, url, r.status_code, r.text[:300])
                    assert "<h1>" in r.text and "<script>" not in r.text
                else:
                    assert r.status_code == 403, (role, url, r.status_code)
            home = await b.get("/console/")
            assert ('data-nav="connect.compliance"' in home.text) == (role in HOLDERS["compliance"])
            assert 'data-nav="connect.inbound"' in home.text
            assert 'data-nav="connect.verify"' in home.text


async def test_chinese_pages_render(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post("/console/locale", {"locale": "zh_Hans", "next": "/console/"})
    assert r.status_code in (303, 204), r.text
    r = await browser.get("/console/connect/compliance")
    assert r.status_code == 200 and "合规" in r.text


# --- words and the test box --------------------------------------------------------------------


async def test_word_added_then_found_through_normalisation(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post(
        "/console/connect/compliance/words", {"word": "加微信", "category": "spam", "action": "hold"}
    )
    assert r.status_code == 303, r.text
    r = await browser.get("/console/connect/compliance")
    assert "加微信" in r.text and "spam" in r.text
    r = await browser.post("/console/connect/compliance/words", {"word": "加微信", "action": "block"})
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text and "already on the list" in r.text
    r = await browser.post("/console/connect/compliance/words", {"word": "--", "action": "block"})
    assert r.status_code == 422 and "normalisation" in r.text
    r = await browser.post(
        "/console/connect/compliance/words", {"word": "x", "action": "nope", "category": "spam"}
    )
    assert r.status_code == 422 and "Choose a value from the list" in r.text
    r = await browser.post(
        "/console/connect/compliance/words",
        {"word": "ＶＩＰ", "category": "promo", "action": "replace", "replacement": "[vip]"},
    )
    assert r.status_code == 303, r.text
    # The test box: separators and full-width letters do not hide the words.
    r = await browser.post(
        "/console/connect/compliance/test",
        {"text": "快来 加-微-信 领取 vip 礼包"},
        headers={"HX-Request": "true"},
    )
    assert r.status_code == 200 and "<html" not in r.text
    assert 'data-testid="verdict">Held for review' in r.text
    assert "加-微-信" in r.text  # the matched span of the original text
    assert "快来加微信领取vip礼包" in r.text  # the normalised text
    assert "[vip]" in r.text  # replaced in the text as it would be sent
    r = await browser.post("/console/connect/compliance/test", {"text": "ＨＥＬＬＯ world"})
    assert r.status_code == 200 and "No listed word was found" in r.text and "helloworld" in r.text
    r = await browser.post("/console/connect/compliance/test", {"text": "   "})
    assert r.status_code == 422 and "Enter some text" in r.text
    r = await browser.post("/console/connect/compliance/test", {"text": ""}, headers={"HX-Request": "true"})
    assert r.status_code == 200 and "Enter some text" in r.text and "<html" not in r.text
    # Remove a word: audited, and the matcher forgets it.
    words = await _in(tenant, lambda s: compliance.list_words(s))
    vip = next(w for w in words if w.action == "replace")
    r = await browser.post(f"/console/connect/compliance/words/{vip.id}/delete")
    assert r.status_code == 303
    r = await browser.post("/console/connect/compliance/test", {"text": "vip"})
    assert "No listed word was found" in r.text
    assert await _audit(tenant, "compliance.word_add") == 2
    assert await _audit(tenant, "compliance.word_delete") == 1


async def test_global_words_are_read_only(browser: Browser, tenant: TenantWorld, app: Any) -> None:
    word = f"g{uuid.uuid4().hex[:6]}"
    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            await compliance.add_global_word(s, word=word, category="fraud", action="block")
    await browser.login(tenant, "admin")
    r = await browser.get("/console/connect/compliance")
    glob = r.text[r.text.index('data-testid="global-words"') :]
    assert word in glob and "/words/" not in glob.split("</table>")[0]
    r = await browser.post("/console/connect/compliance/test", {"text": f"a {word.upper()} b"})
    assert "Blocked" in r.text


# --- review queue ------------------------------------------------------------------------------


async def test_review_approve_and_reject(
    client: httpx.AsyncClient, browser: Browser, tenant: TenantWorld, other_tenant: TenantWorld, app: Any
) -> None:
    await setup_sms(client, tenant)
    await _in(tenant, lambda s: compliance.add_word(s, word="loan", category="finance", action="hold"))
    rid = await _hold(tenant, "cheap loan today")
    rid2 = await _hold(tenant, "another loan")
    await browser.login(tenant, "admin")
    r = await browser.get("/console/connect/compliance/reviews")
    assert "cheap loan today" in r.text and "another loan" in r.text
    r = await browser.get(f"/console/connect/compliance/reviews/{rid}")
    assert r.status_code == 200 and "cheap loan today" in r.text
    # Another tenant's owner: 404 on the page and on both decisions; nothing changes.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        intruder = Browser(c)
        await intruder.login(other_tenant, "owner")
        for url in (f"/console/connect/compliance/reviews/{rid}",):
            assert (await intruder.get(url)).status_code == 404
        for url in (
            f"/console/connect/compliance/reviews/{rid}/approve",
            f"/console/connect/compliance/reviews/{rid}/reject",
        ):
            assert (await intruder.post(url, {"note": "x"})).status_code == 404
    assert (await _review(tenant, rid)).status == "pending"
    # Approve: released into the pipeline as an accepted message.
    r = await browser.post(f"/console/connect/compliance/reviews/{rid}/approve", {"note": "fine"})
    assert r.status_code == 303, r.text
    row = await _review(tenant, rid)
    assert row.status == "approved" and row.message_id is not None
    msg = await _in(tenant, lambda s: s.get(Message, row.message_id))
    assert msg is not None and msg.body.endswith("cheap loan today")
    r = await browser.post(f"/console/connect/compliance/reviews/{rid}/reject", {"note": "late"})
    assert r.status_code == 409 and "already been decided" in r.text
    # Reject needs a reason.
    r = await browser.post(f"/console/connect/compliance/reviews/{rid2}/reject", {"note": " "})
    assert r.status_code == 422 and "Give a reason" in r.text
    assert (await _review(tenant, rid2)).status == "pending"
    r = await browser.post(f"/console/connect/compliance/reviews/{rid2}/reject", {"note": "spam"})
    assert r.status_code == 303
    row2 = await _review(tenant, rid2)
    assert row2.status == "rejected" and row2.decision_note == "spam" and row2.message_id is None
    r = await browser.get("/console/connect/compliance/reviews?status=rejected")
    assert "another loan" in r.text and "cheap loan" not in r.text
    r = await browser.get("/console/")
    assert "Held messages" in r.text


# --- number lists and opt-outs -----------------------------------------------------------------


async def test_number_lists(
    app: Any, browser: Browser, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post(
        "/console/connect/compliance/lists/block", {"value": "13912345678", "note": "abuse"}
    )
    assert r.status_code == 303, r.text
    r = await browser.post("/console/connect/compliance/lists/block", {"value": TO})
    assert r.status_code == 422 and "already on the list" in r.text
    r = await browser.post("/console/connect/compliance/lists/allow", {"value": "not a number"})
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    r = await browser.get("/console/connect/compliance/lists?list=block")
    assert "abuse" in r.text
    entries = await _in(tenant, lambda s: compliance.list_entries(s, "block"))
    assert len(entries) == 1 and entries[0].value == TO
    word = await _in(tenant, lambda s: compliance.add_word(s, word="secret", action="block", category="x"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        intruder = Browser(c)
        await intruder.login(other_tenant, "owner")
        r = await intruder.post(f"/console/connect/compliance/lists/entries/{entries[0].id}/delete")
        assert r.status_code == 404
        assert (await intruder.post(f"/console/connect/compliance/words/{word.id}/delete")).status_code == 404
        r = await intruder.get("/console/connect/compliance/lists?list=block")
        assert "abuse" not in r.text
    assert len(await _in(tenant, lambda s: compliance.list_entries(s, "block"))) == 1
    assert len(await _in(tenant, lambda s: compliance.list_words(s))) == 1
    r = await browser.post(
        f"/console/connect/compliance/lists/entries/{entries[0].id}/delete", {"list": "block"}
    )
    assert r.status_code == 303 and "list=block" in r.headers["location"]
    assert await _in(tenant, lambda s: compliance.list_entries(s, "block")) == []


async def test_opt_out_add_search_remove(
    app: Any, browser: Browser, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post(
        "/console/connect/compliance/opt-outs", {"channel": "sms", "address": "139 1234 5678"}
    )
    assert r.status_code == 303, r.text
    r = await browser.post("/console/connect/compliance/opt-outs", {"channel": "fax", "address": TO})
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    r = await browser.post("/console/connect/compliance/opt-outs", {"channel": "sms", "address": "12"})
    assert r.status_code == 422
    assert await _in(tenant, lambda s: compliance.is_opted_out(s, channel="sms", address=TO))
    r = await browser.post("/console/connect/compliance/opt-outs/search", {"address": TO})
    assert r.status_code == 200 and 'data-testid="found"' in r.text
    r = await browser.post("/console/connect/compliance/opt-outs/search", {"address": "+8613900000000"})
    assert 'data-testid="not-found"' in r.text
    r = await browser.post("/console/connect/compliance/opt-outs/search", {"address": "abc"})
    assert r.status_code == 422
    [row] = await _in(tenant, lambda s: compliance.list_opt_outs(s))
    assert row.source == "console"
    # Another tenant cannot remove it.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        intruder = Browser(c)
        await intruder.login(other_tenant, "owner")
        assert (
            await intruder.post(f"/console/connect/compliance/opt-outs/{row.id}/delete")
        ).status_code == 404
        r = await intruder.post("/console/connect/compliance/opt-outs/search", {"address": TO})
        assert 'data-testid="not-found"' in r.text
    assert await _in(tenant, lambda s: compliance.is_opted_out(s, channel="sms", address=TO))
    r = await browser.post(f"/console/connect/compliance/opt-outs/{row.id}/delete")
    assert r.status_code == 303
    assert not await _in(tenant, lambda s: compliance.is_opted_out(s, channel="sms", address=TO))
    assert await _audit(tenant, "compliance.opt_out") == 1
    assert await _audit(tenant, "compliance.opt_in") == 1


async def test_quiet_hours_and_caps(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.get("/console/connect/compliance/settings")
    assert "Asia/Shanghai" in r.text
    r = await browser.post(
        "/console/connect/compliance/settings",
        {"quiet_start": "21:00", "quiet_end": "08:30", "cap_count": "3", "cap_window_hours": "24"},
    )
    assert r.status_code == 303, r.text
    st = await _in(tenant, lambda s: compliance.get_settings(s))
    assert (st.quiet_start, st.quiet_end, st.cap_count) == (21 * 60, 8 * 60 + 30, 3)
    # Start without end: refused on the form, nothing changes.
    r = await browser.post(
        "/console/connect/compliance/settings", {"quiet_start": "22:00", "quiet_end": "", "cap_count": "5"}
    )
    assert r.status_code == 422 and "both a start and an end" in r.text
    r = await browser.post(
        "/console/connect/compliance/settings", {"quiet_start": "25:00", "quiet_end": "08:00"}
    )
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    r = await browser.post("/console/connect/compliance/settings", {"cap_count": "0"})
    assert r.status_code == 422
    st = await _in(tenant, lambda s: compliance.get_settings(s))
    assert (st.quiet_start, st.quiet_end, st.cap_count) == (21 * 60, 8 * 60 + 30, 3)
    r = await browser.post("/console/connect/compliance/settings", {})
    assert r.status_code == 303
    st = await _in(tenant, lambda s: compliance.get_settings(s))
    assert (st.quiet_start, st.quiet_end, st.cap_count, st.cap_window_hours) == (None, None, None, 24)


# --- inbound -----------------------------------------------------------------------------------


async def test_auto_reply_rule_crud_and_inbound_list(
    app: Any, client: httpx.AsyncClient, browser: Browser, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    await setup_sms(client, tenant)
    await browser.login(tenant, "admin")
    r = await browser.post("/console/connect/inbound/rules", {"keyword": "", "reply": "", "match": "exact"})
    assert r.status_code == 422 and r.text.count('aria-invalid="true"') >= 2
    r = await browser.post(
        "/console/connect/inbound/rules", {"keyword": "HOURS", "reply": "9-18", "priority": "abc"}
    )
    assert r.status_code == 422 and 'id="f-priority-err"' in r.text
    r = await browser.post(
        "/console/connect/inbound/rules",
        {
            "keyword": "Hours",
            "match": "exact",
            "reply": "We are open 9-18.",
            "priority": "10",
            "active": "on",
        },
    )
    assert r.status_code == 303, r.text
    r = await browser.post(
        "/console/connect/inbound/rules",
        {"keyword": "Hours", "reply": "dup", "priority": "1", "active": "on"},
    )
    assert r.status_code == 422 and "already exists" in r.text
    rules = await _in(tenant, lambda s: _all(s, AutoReplyRule))
    assert len(rules) == 1
    rule = rules[0]
    url = f"/console/connect/inbound/rules/{rule.id}"
    r = await browser.get(url)
    assert r.status_code == 200 and "We are open 9-18." in r.text
    r = await browser.post(url, {"keyword": "营业时间", "match": "contains", "reply": "", "priority": "5"})
    assert r.status_code == 422 and 'aria-invalid="true"' in r.text
    r = await browser.post(
        url,
        {"keyword": "营业时间", "match": "contains", "reply": "9点到18点", "priority": "5", "active": "on"},
    )
    assert r.status_code == 303, r.text
    # Another tenant: 404 on read, update and delete; nothing changes.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        intruder = Browser(c)
        await intruder.login(other_tenant, "owner")
        assert (await intruder.get(url)).status_code == 404
        assert (await intruder.post(url, {"keyword": "x", "reply": "y", "priority": "1"})).status_code == 404
        assert (await intruder.post(f"{url}/delete")).status_code == 404
    [rule] = await _in(tenant, lambda s: _all(s, AutoReplyRule))
    assert (rule.keyword, rule.match, rule.reply) == ("营业时间", "contains", "9点到18点")
    # An MO matching the rule, and an opt-out, appear in the inbound list.
    h = tenant.headers("admin")
    for text in ("请问营业时间?", "TD"):
        r = await client.post(
            "/v1/inbound/messages", json={"source": TO, "destination": "10690001", "text": text}, headers=h
        )
        assert r.status_code == 201, r.text
    r = await browser.get("/console/connect/inbound")
    assert "请问营业时间?" in r.text and "营业时间" in r.text and "Opt-out" in r.text
    assert TO in r.text  # the admin holds pii:view
    r = await browser.get("/console/connect/inbound?body__contains=营业")
    rows = r.text[r.text.index("<tbody>") :]
    assert "请问营业时间?" in rows and "Opt-out" not in rows
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        member = Browser(c)
        await member.login(tenant, "member")
        r = await member.get("/console/connect/inbound")
        assert r.status_code == 200 and "请问营业时间?" in r.text and TO not in r.text  # masked
    r = await browser.post(f"{url}/delete")
    assert r.status_code == 303
    assert await _in(tenant, lambda s: _all(s, AutoReplyRule)) == []
    assert await _audit(tenant, "inbound.rule_update") == 1


async def _all(s: Any, model: Any) -> list[Any]:
    return list((await s.execute(select(model))).scalars())


async def test_opt_out_keywords(browser: Browser, tenant: TenantWorld) -> None:
    await browser.login(tenant, "admin")
    r = await browser.post(
        "/console/connect/inbound/keywords",
        {"opt_out_keywords": "取消, QUIT\nNOMORE", "opt_out_reply": "Bye"},
    )
    assert r.status_code == 303, r.text
    st = await _in(tenant, lambda s: compliance.get_settings(s))
    assert st.opt_out_keywords == ["取消", "QUIT", "NOMORE"] and st.opt_out_reply == "Bye"
    assert await _in(tenant, lambda s: compliance.is_opt_out_text(s, "quit"))
    r = await browser.post("/console/connect/inbound/keywords", {"opt_out_keywords": "x" * 70})
    assert r.status_code == 422 and "64 characters" in r.text
    r = await browser.post("/console/connect/inbound/keywords", {"opt_out_keywords": "", "opt_out_reply": ""})
    assert r.status_code == 303
    st = await _in(tenant, lambda s: _all(s, ComplianceSettings))
    assert st[0].opt_out_keywords == [] and st[0].opt_out_reply == ""


# --- verification statistics -------------------------------------------------------------------


async def test_verify_statistics_never_show_codes(browser: Browser, tenant: TenantWorld) -> None:
    now = utcnow()

    async def seed(s: Any) -> None:
        for i, (template, status, delivered) in enumerate(
            [("login", "approved", 2.0), ("login", "pending", None), ("signup", "approved", 4.0)]
        ):
            s.add(
                Verification(
                    channel="sms",
                    to=TO,
                    to_index=f"idx{i}",
                    template=template,
                    code_length=6,
                    code_salt="00" * 8,
                    code_hash="ab" * 32,
                    status=status,
                    expires_at=now,
                    last_sent_at=now,
                    delivered_at=now + dt.timedelta(seconds=delivered) if delivered else None,
                    created_at=now,
                )
            )

    await _in(tenant, seed)
    await browser.login(tenant, "member")
    r = await browser.get("/console/connect/verify")
    assert r.status_code == 200
    assert 'data-chart="chart-verify-volume"' in r.text and 'id="chart-verify-templates"' in r.text
    conversion = re.search(r'id="chart-verify-template-conversion">(.*?)</script>', r.text, re.S)
    assert conversion and '"labels":["login","signup"]' in conversion.group(1)
    assert '"data":[50.0,100.0]' in conversion.group(1)
    totals = r.text[r.text.index('data-testid="verify-totals"') :]
    assert re.search(r"Conversion rate</div><div class=\"tile-value\">66.7 %", totals)
    assert "login" in r.text and "signup" in r.text
    assert "ab" * 32 not in r.text and TO not in r.text  # no code hash; number masked for a member
    r = await browser.get("/console/connect/verify?days=30")
    assert r.status_code == 200


# --- email: DKIM and the sink ------------------------------------------------------------------


async def test_email_channel_dkim_status_and_check(
    app: Any, browser: Browser, tenant: TenantWorld, other_tenant: TenantWorld
) -> None:
    private, _public = generate_key_pair(1024)

    async def seed(s: Any) -> uuid.UUID:
        ch = Channel(
            kind="email",
            name="Mail",
            settings={
                "smtp_host": "127.0.0.1",
                "smtp_port": 2525,
                "dkim_selector": "s1",
                "dkim_domain": "example.com",
            },
            secret=private.decode(),
        )
        bare = Channel(kind="email", name="Bare", settings={})
        s.add_all([ch, bare])
        await s.flush()
        return ch.id, bare.id

    cid, bare = await _in(tenant, seed)
    await browser.login(tenant, "admin")
    r = await browser.get("/console/connect/email")
    assert "Mail" in r.text and "Key present" in r.text and "Not set up" in r.text
    r = await browser.get(f"/console/connect/email/channels/{cid}")
    assert "s1._domainkey.example.com" in r.text and "v=DKIM1; k=rsa; p=MI" in r.text
    assert "PRIVATE KEY" not in r.text
    r = await browser.post(f"/console/connect/email/channels/{cid}/check")
    assert r.status_code == 200 and "Signing works" in r.text
    r = await browser.post(f"/console/connect/email/channels/{bare}/check")
    assert "DKIM is not set up" in r.text
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        intruder = Browser(c)
        await intruder.login(other_tenant, "owner")
        assert (await intruder.get(f"/console/connect/email/channels/{cid}")).status_code == 404
        assert (await intruder.post(f"/console/connect/email/channels/{cid}/check")).status_code == 404


async def test_sink_page_shows_mail_sent_over_smtp(
    app: Any, browser: Browser, tenant: TenantWorld, other_tenant: TenantWorld, settings: Any
) -> None:
    box = mailbox_dir(settings.data_dir, tenant.tenant_id)
    with SmtpSink(store_dir=box, keep_in_memory=False) as sink:
        async with SmtpLink(SmtpConfig("127.0.0.1", sink.port, pool_size=1)) as link:
            msg = compose_email(
                sender="shop@example.com",
                to="buyer@example.org",
                subject="Your order 你的订单",
                text="Thanks for your order.",
                html='<p onclick="x()">Hi <script>alert(1)</script><b>there</b></p>',
            )
            result = await link.send(msg)
        assert result.accepted and sink.wait_for(1)
    await browser.login(tenant, "member")
    r = await browser.get("/console/connect/email/sink")
    assert r.status_code == 200 and "Your order 你的订单" in r.text
    assert "buyer@example.org" not in r.text  # masked for a member
    key = re.search(r"/console/connect/email/sink/([0-9-]+)\"", r.text).group(1)
    r = await browser.get(f"/console/connect/email/sink/{key}")
    assert r.status_code == 200 and "Thanks for your order." in r.text
    assert "<script>alert(1)</script>" not in r.text  # HTML only escaped or inside the sandbox
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    assert re.search(r'<iframe[^>]*sandbox=""[^>]*srcdoc="&lt;p', r.text)
    for bad in ("../../etc/passwd", "1-2", "abc"):
        assert (await browser.get(f"/console/connect/email/sink/{bad}")).status_code == 404
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c:
        intruder = Browser(c)
        await intruder.login(other_tenant, "owner")
        r = await intruder.get("/console/connect/email/sink")
        assert "Your order" not in r.text
        assert (await intruder.get(f"/console/connect/email/sink/{key}")).status_code == 404


async def test_demo_email_channel_and_sink(browser: Browser, tenant: TenantWorld, settings: Any) -> None:
    """``tessera demo``'s wiring: an email channel with a working DKIM key pointing at the sink,
    a sink storing into the tenant's mailbox, and a signed welcome mail on the sink page."""
    from tessera.connect import demo

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        busy = taken.getsockname()[1]
        port = demo.choose_mail_sink_port(busy)  # taken: another free port is chosen
    assert port != busy
    await demo.setup(settings, tenant_slug=tenant.slug, port=2775, mail_port=port)
    await demo.setup(settings, tenant_slug=tenant.slug, port=2775, mail_port=port)  # idempotent
    [ch] = await _in(tenant, lambda s: _all_where(s, Channel, Channel.kind == "email"))
    assert ch.settings["smtp_port"] == port and ch.settings["sink"] is True
    sink = await demo.start_mail_sink(settings, tenant_slug=tenant.slug, port=port)
    try:
        assert sink is not None and sink.wait_for(1)
    finally:
        sink.stop()
    await browser.login(tenant, "admin")
    r = await browser.post(f"/console/connect/email/channels/{ch.id}/check")
    assert "Signing works" in r.text
    r = await browser.get("/console/connect/email/sink")
    assert "Welcome to the Tessera demo" in r.text
    key = re.search(r"/console/connect/email/sink/([0-9-]+)\"", r.text).group(1)
    r = await browser.get(f"/console/connect/email/sink/{key}")
    assert "DKIM-Signature" in r.text and "local SMTP sink" in r.text
    assert await demo.start_mail_sink(settings, tenant_slug="no-such-tenant") is None
    # Compliance examples: the words once, and one held message waiting in the review queue.
    words = await _in(tenant, lambda s: compliance.list_words(s))
    assert sorted(w.word for w in words) == sorted(w[0] for w in demo.DEMO_WORDS)
    [held] = await _in(tenant, lambda s: compliance.list_reviews(s, "pending"))
    assert held.body == demo.DEMO_HELD_BODY and held.hits[0]["word"] == "加微信"
    r = await browser.get("/console/connect/compliance/reviews")
    assert demo.DEMO_HELD_BODY in r.text


async def _all_where(s: Any, model: Any, *cond: Any) -> list[Any]:
    return list((await s.execute(select(model).where(*cond))).scalars())


async def test_approve_without_a_channel_leaves_the_review_pending(
    browser: Browser, tenant: TenantWorld
) -> None:
    await _in(tenant, lambda s: compliance.add_word(s, word="loan", category="finance", action="hold"))
    rid = await _hold(tenant, "loan offer")
    await browser.login(tenant, "admin")
    r = await browser.post(f"/console/connect/compliance/reviews/{rid}/approve")
    assert r.status_code == 422 and 'role="alert"' in r.text
    row = await _review(tenant, rid)
    assert row.status == "pending" and row.message_id is None and row.decided_by is None
    assert await _audit(tenant, "compliance.review_approved") == 0


async def test_list_pages_query_count_does_not_grow_with_rows(
    browser: Browser, tenant: TenantWorld, db: Any
) -> None:
    from sqlalchemy import event

    from tessera.connect.inbound import service as inbound

    engine = db.engine.sync_engine
    seen: list[str] = []

    def count(conn: object, cursor: object, statement: str, *a: object) -> None:
        seen.append(statement)

    async def queries(path: str) -> int:
        seen.clear()
        event.listen(engine, "before_cursor_execute", count)
        try:
            r = await browser.get(path)
            assert r.status_code == 200, path
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return len(seen)

    async def seed(n: int, start: int) -> None:
        async def go(s: Any) -> None:
            for i in range(start, start + n):
                number = f"+86139{i:08d}"
                await compliance.add_word(s, word=f"w{i}", category=f"c{i % 3}", action="hold")
                await compliance.add_entry(s, list_kind="block", value=number)
                await compliance.opt_out(s, channel="sms", address=number)
                await inbound.handle_mo(s, source=number, dest="1069", text=f"hello {i}")

        await _in(tenant, go)
        for i in range(start, start + n):
            await _hold(tenant, f"w{i} body")

    await browser.login(tenant, "admin")
    pages = (
        "/console/connect/compliance",
        "/console/connect/compliance/reviews",
        "/console/connect/compliance/lists?list=block",
        "/console/connect/compliance/opt-outs",
        "/console/connect/inbound",
        "/console/connect/inbound/rules",
        "/console/connect/verify",
    )
    await seed(1, 0)
    before = {p: await queries(p) for p in pages}
    await seed(8, 1)
    after = {p: await queries(p) for p in pages}
    assert after == before
