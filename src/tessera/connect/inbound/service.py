"""Inbound (MO) messages: store, link to a contact, opt-out keywords, auto-replies, webhook.

Entry points for the SMS gateway:

- :func:`handle_mo` ``(session, *, source, dest, text)`` with the tenant in scope, in the
  caller's transaction;
- :func:`receive_mo` ``(tenant_id, source, dest, text)`` opens its own unit of work; it is
  what an ``SmppClient(on_mo=...)`` callback of a link (whose tenant is known) calls.

An opt-out keyword (tenant's list, default TD / 退订 / STOP / UNSUBSCRIBE) sends the
confirmation first (it would be refused once the opt-out exists), then records the opt-out
and the contact's consent. Other texts are matched against the active auto-reply rules,
lowest priority first, on normalised text. Every MO publishes ``message.inbound``.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.compliance import service as compliance
from tessera.connect.compliance.normalize import normalize
from tessera.connect.errors import MessageInvalid
from tessera.connect.inbound.errors import DuplicateRule, InboundNotFound, RuleNotFound
from tessera.connect.inbound.models import AutoReplyRule, InboundMessage
from tessera.connect.schemas import MessageIn
from tessera.core import context
from tessera.core.audit import service as audit
from tessera.core.crypto.types import blind_index
from tessera.core.db.base import utcnow
from tessera.core.db.session import unit_of_work
from tessera.core.events import service as events
from tessera.core.phone import InvalidPhone, normalize_phone

log = logging.getLogger(__name__)

DEFAULT_REPLY_EN = "You are unsubscribed and will receive no more messages from us."
DEFAULT_REPLY_ZH = "您已成功退订，将不再收到我们的短信。"


def _has_cjk(text: str) -> bool:
    return any(0x3400 <= ord(c) <= 0x9FFF for c in text)


async def _reply(session: AsyncSession, to: str, body: str, reference: str) -> uuid.UUID | None:
    from tessera.connect.service.send import send_message

    try:
        accepted = await send_message(
            session, MessageIn(to=to, body=body, reference=reference, **{"class": "notification"})
        )
    except MessageInvalid as exc:  # no SMS channel configured: store the MO anyway
        log.warning("inbound reply not sent: %s", exc.message)
        return None
    return accepted.id


async def _match_rule(session: AsyncSession, text: str) -> AutoReplyRule | None:
    norm = normalize(text)
    if not norm:
        return None
    rules = (
        await session.execute(
            select(AutoReplyRule)
            .where(AutoReplyRule.active.is_(True))
            .order_by(AutoReplyRule.priority, AutoReplyRule.created_at)
        )
    ).scalars()
    for rule in rules:
        key = normalize(rule.keyword)
        if key and (norm == key if rule.match == "exact" else key in norm):
            return rule
    return None


async def _contact_id(session: AsyncSession, phone: str) -> uuid.UUID | None:
    try:
        from tessera.contacts.service import find_contact_by_phone
    except ImportError:  # pragma: no cover - contacts context not installed
        return None
    contact = await find_contact_by_phone(session, phone)
    return contact.id if contact is not None else None


async def _set_consent(session: AsyncSession, contact_id: uuid.UUID, channel: str) -> None:
    try:
        from tessera.contacts.service import set_consent
    except ImportError:  # pragma: no cover
        return
    await set_consent(session, contact_id, channel, "opted_out", "keyword")


async def handle_mo(
    session: AsyncSession, *, source: str, dest: str, text: str, channel: str = "sms"
) -> InboundMessage:
    """Process one MO for the tenant in scope (caller's transaction)."""
    try:
        sender = normalize_phone(source, "CN", field="source")
    except InvalidPhone:
        sender = source.strip()
    msg = InboundMessage(
        channel=channel,
        from_=sender,
        from_index=blind_index("phone", sender),
        to=dest,
        body=text,
        opt_out=False,
        received_at=utcnow(),
    )
    msg.contact_id = await _contact_id(session, sender)
    if await compliance.is_opt_out_text(session, text):
        msg.opt_out = True
        st = await compliance.get_settings(session)
        reply = st.opt_out_reply or (DEFAULT_REPLY_ZH if _has_cjk(text) else DEFAULT_REPLY_EN)
        if not await compliance.is_opted_out(session, channel=channel, address=sender):
            msg.reply_message_id = await _reply(session, sender, reply, "opt-out")
            await compliance.opt_out(session, channel=channel, address=sender, source="keyword")
            if msg.contact_id is not None:
                await _set_consent(session, msg.contact_id, channel)
    else:
        rule = await _match_rule(session, text)
        if rule is not None:
            msg.rule_id = rule.id
            msg.reply_message_id = await _reply(session, sender, rule.reply, f"auto-reply:{rule.id}")
    session.add(msg)
    await session.flush()
    await events.publish(
        session,
        "message.inbound",
        {
            "id": str(msg.id),
            "channel": channel,
            "from": sender,
            "to": dest,
            "body": text,
            "contact_id": str(msg.contact_id) if msg.contact_id else None,
            "opt_out": msg.opt_out,
            "auto_reply_rule_id": str(msg.rule_id) if msg.rule_id else None,
            "received_at": msg.received_at.isoformat(),
        },
    )
    return msg


async def receive_mo(
    tenant_id: uuid.UUID, source: str, dest: str, text: str, *, channel: str = "sms"
) -> uuid.UUID:
    """Gateway entry point: one transaction in ``tenant_id`` for one MO."""
    with context.tenant_scope(tenant_id):
        async with unit_of_work() as session:
            msg = await handle_mo(session, source=source, dest=dest, text=text, channel=channel)
            return msg.id


async def list_messages(session: AsyncSession, limit: int = 100) -> list[InboundMessage]:
    stmt = (
        select(InboundMessage)
        .order_by(InboundMessage.received_at.desc(), InboundMessage.id.desc())
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def get_message(session: AsyncSession, message_id: uuid.UUID) -> InboundMessage:
    m = (
        await session.execute(select(InboundMessage).where(InboundMessage.id == message_id))
    ).scalar_one_or_none()
    if m is None:
        raise InboundNotFound()
    return m


async def list_rules(session: AsyncSession) -> list[AutoReplyRule]:
    stmt = select(AutoReplyRule).order_by(AutoReplyRule.priority, AutoReplyRule.created_at)
    return list((await session.execute(stmt)).scalars())


async def create_rule(session: AsyncSession, data: dict[str, Any]) -> AutoReplyRule:
    keyword = data["keyword"].strip()
    if not normalize(keyword):
        from tessera.connect.compliance.errors import ComplianceInvalid

        raise ComplianceInvalid(
            "the keyword is empty after normalisation", field="keyword", rule="empty_after_normalisation"
        )
    exists = (await session.execute(select(AutoReplyRule.id).where(AutoReplyRule.keyword == keyword))).first()
    if exists:
        raise DuplicateRule(field="keyword")
    rule = AutoReplyRule(**{**data, "keyword": keyword})
    session.add(rule)
    await session.flush()
    await audit.record(session, "inbound.rule_create", "auto_reply_rule", rule.id, after={"keyword": keyword})
    return rule


async def get_rule(session: AsyncSession, rule_id: uuid.UUID) -> AutoReplyRule:
    rule = (
        await session.execute(select(AutoReplyRule).where(AutoReplyRule.id == rule_id))
    ).scalar_one_or_none()
    if rule is None:
        raise RuleNotFound()
    return rule


async def update_rule(session: AsyncSession, rule_id: uuid.UUID, data: dict[str, Any]) -> AutoReplyRule:
    """Replace a rule's fields (validated like :func:`create_rule`); audited."""
    rule = await get_rule(session, rule_id)
    keyword = data["keyword"].strip()
    if not normalize(keyword):
        from tessera.connect.compliance.errors import ComplianceInvalid

        raise ComplianceInvalid(
            "the keyword is empty after normalisation", field="keyword", rule="empty_after_normalisation"
        )
    if keyword != rule.keyword:
        exists = (
            await session.execute(select(AutoReplyRule.id).where(AutoReplyRule.keyword == keyword))
        ).first()
        if exists:
            raise DuplicateRule(field="keyword")
    fields = ("keyword", "match", "reply", "priority", "active")
    before = {k: getattr(rule, k) for k in fields}
    for k, v in {**data, "keyword": keyword}.items():
        if k in fields:
            setattr(rule, k, v)
    await session.flush()
    await audit.record(
        session,
        "inbound.rule_update",
        "auto_reply_rule",
        rule.id,
        before=before,
        after={k: getattr(rule, k) for k in fields},
    )
    return rule


async def delete_rule(session: AsyncSession, rule_id: uuid.UUID) -> None:
    rule = (
        await session.execute(select(AutoReplyRule).where(AutoReplyRule.id == rule_id))
    ).scalar_one_or_none()
    if rule is None:
        raise RuleNotFound()
    await session.delete(rule)
    await session.flush()
    await audit.record(
        session, "inbound.rule_delete", "auto_reply_rule", rule_id, before={"keyword": rule.keyword}
    )
