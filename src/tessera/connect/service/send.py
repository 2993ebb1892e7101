"""Sending: validate, render, price, consume quota and store messages durably (status ``accepted``).

One call stores every message of a request in the caller's transaction with bulk inserts; the
request answers 202 only once that transaction has committed. Any invalid recipient refuses
the whole request and nothing is stored. The dispatcher takes over from the dispatch queue.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect import encoding
from tessera.connect.email.content import render_email_parts
from tessera.connect.errors import MessageInvalid
from tessera.connect.models import (
    LANES,
    Channel,
    DispatchItem,
    Message,
    MessageEvent,
    RateCard,
    Signature,
    Template,
)
from tessera.connect.schemas import BatchIn, MessageIn, Recipient
from tessera.connect.service.templates import render
from tessera.core import context
from tessera.core.crypto.types import blind_index
from tessera.core.db.base import table_of, utcnow, uuid7
from tessera.core.db.session import after_commit
from tessera.core.phone import InvalidPhone, carrier_name, normalize_phone

try:  # the subscription kernel is optional at import time
    from tessera.core.subscription.service import consume as _consume
except ImportError:  # pragma: no cover
    _consume = None  # type: ignore[assignment]

METER = {"sms": "messages.sms", "wechat": "messages.wechat"}


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    id: uuid.UUID
    status: str
    segments: int
    encoding: str


@dataclass
class _Common:
    channel: Channel
    message_class: str
    template: Template | None
    body: str
    signature: str
    source: str
    scheduled_at: dt.datetime | None
    valid_until: dt.datetime | None
    campaign_id: uuid.UUID | None
    metadata: dict[str, Any]


async def resolve_channel(session: AsyncSession, channel_id: uuid.UUID | None, kind: str) -> Channel:
    stmt = select(Channel).where(Channel.status == "active")
    if channel_id is not None:
        stmt = stmt.where(Channel.id == channel_id)
    else:
        stmt = stmt.where(Channel.kind == kind).order_by(Channel.created_at, Channel.id).limit(1)
    ch = (await session.execute(stmt)).scalars().first()
    if ch is None:
        if channel_id is not None:
            raise MessageInvalid(
                "the channel does not exist or is disabled", field="channel_id", rule="unknown_channel"
            )
        raise MessageInvalid(
            f"no active {kind} channel is configured", field="channel", rule="unsupported_channel"
        )
    if ch.kind != kind and channel_id is not None and kind != "sms":
        raise MessageInvalid(f"channel is a {ch.kind} channel", field="channel", rule="channel_mismatch")
    return ch


async def _signature(session: AsyncSession, ch: Channel, text: str | None) -> str:
    if ch.kind != "sms":
        return ""
    stmt = select(Signature).where(Signature.status == "approved")
    if text is not None:
        s = (
            await session.execute(stmt.where(Signature.text == text.strip().strip("【】")))
        ).scalar_one_or_none()
        if s is None:
            raise MessageInvalid(
                "the signature is not approved", field="signature", rule="signature_not_approved"
            )
        return f"【{s.text}】"
    s = (await session.execute(stmt.where(Signature.is_default.is_(True)).limit(1))).scalars().first()
    return f"【{s.text}】" if s else ""


async def _common(session: AsyncSession, data: MessageIn | BatchIn) -> _Common:
    ch = await resolve_channel(session, data.channel_id, data.channel)
    template: Template | None = None
    body = data.body
    if data.template_id is not None:
        template = (
            await session.execute(select(Template).where(Template.id == data.template_id))
        ).scalar_one_or_none()
        if template is None:
            raise MessageInvalid("the template does not exist", field="template_id", rule="unknown_template")
        if template.status != "approved" and (
            ch.kind == "wechat" or data.message_class in ("marketing", "notification")
        ):
            raise MessageInvalid(
                f"the template is {template.status}, not approved",
                field="template_id",
                rule="template_not_approved",
            )
        if template.message_class != data.message_class:
            raise MessageInvalid(
                f"the template is for {template.message_class} messages",
                field="class",
                rule="template_class_mismatch",
            )
        body = template.bodies.get(ch.kind)
        if body is None:
            raise MessageInvalid(
                f"the template has no {ch.kind} body", field="template_id", rule="template_channel_missing"
            )
        if ch.kind == "wechat" and not template.external_id:
            raise MessageInvalid(
                "WeChat needs the template id assigned by WeChat",
                field="template_id",
                rule="template_external_id_missing",
            )
    elif ch.kind == "wechat":
        raise MessageInvalid("WeChat messages need a template", field="template_id", rule="required")
    if body is None or not body.strip():
        raise MessageInvalid("the message body is empty", field="body", rule="required")
    now = utcnow()
    if data.scheduled_at is not None and data.scheduled_at.tzinfo is None:
        raise MessageInvalid("scheduled_at needs a time zone", field="scheduled_at", rule="timezone_required")
    start = max(data.scheduled_at or now, now)
    return _Common(
        channel=ch,
        message_class=data.message_class,
        template=template,
        body=body,
        signature=await _signature(session, ch, data.signature),
        source=data.source or ch.default_source,
        scheduled_at=data.scheduled_at,
        valid_until=start + dt.timedelta(minutes=data.validity_minutes) if data.validity_minutes else None,
        campaign_id=data.campaign_id,
        metadata=data.metadata,
    )


async def _rates(session: AsyncSession, kind: str) -> dict[str, tuple[int, str]]:
    rows = (await session.execute(select(RateCard).where(RateCard.channel_kind == kind))).scalars()
    return {r.carrier: (r.price_minor, r.currency) for r in rows}


def _destination(ch: Channel, raw: str, field: str) -> tuple[str, str]:
    if ch.kind == "sms":
        try:
            e164 = normalize_phone(raw, "CN", field=field)
        except InvalidPhone as exc:
            raise MessageInvalid(exc.message, field=field, rule="invalid_phone") from None
        return e164, carrier_name(e164)
    if not raw.strip() or len(raw) > 64:
        raise MessageInvalid("not a WeChat openid", field=field, rule="invalid_openid")
    return raw.strip(), ""


async def send_messages(
    session: AsyncSession,
    data: MessageIn | BatchIn,
    recipients: Sequence[Recipient],
    *,
    quota_ref: str | None = None,
) -> list[AcceptedMessage]:
    """Validate and store one message per recipient in the caller's transaction.

    Raises :class:`MessageInvalid` (422, naming the field and rule) before anything is written."""
    common = await _common(session, data)
    ch = common.channel
    rates = await _rates(session, ch.kind)
    tid = context.current_tenant_id()
    now = utcnow()
    lane = LANES[common.message_class]
    shared = dict(getattr(data, "variables", {}) or {})
    single = isinstance(data, MessageIn)
    messages: list[dict[str, Any]] = []
    queue: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    out: list[AcceptedMessage] = []
    total_segments = 0
    preview_cache: dict[str, Any] = {}
    for i, rcpt in enumerate(recipients):
        prefix = "" if single else f"recipients.{i}."
        to, carrier = _destination(ch, rcpt.to, f"{prefix}to")
        variables = {**shared, **rcpt.variables}
        vfield = "variables" if single else f"recipients.{i}.variables"
        if ch.kind == "email":  # subject and HTML share the variables (stored under "$email")
            text, variables = render_email_parts(
                common.body, data.subject, data.html, variables, field=vfield
            )
        else:
            text = render(common.body, variables, field=vfield)
        text = common.signature + text
        if not text.strip():
            raise MessageInvalid("the message body is empty", field="body", rule="required")
        pv = preview_cache.get(text)
        if pv is None:
            pv = (
                encoding.preview(text)
                if ch.kind == "sms"
                else {"encoding": "utf8", "segments": 1, "characters": len(text), "parts": [text]}
            )  # type: ignore[typeddict-item]
            if len(preview_cache) < 1000:
                preview_cache[text] = pv
        price, currency = rates.get(carrier) or rates.get("*") or (0, "CNY")
        mid = uuid7()
        total_segments += pv["segments"]
        messages.append(
            {
                "id": mid,
                "tenant_id": tid,
                "channel_id": ch.id,
                "channel_kind": ch.kind,
                "message_class": common.message_class,
                "to": to,
                "to_index": blind_index("phone" if ch.kind == "sms" else "openid", to),
                "source": common.source,
                "body": text,
                "template_id": common.template.id if common.template else None,
                "variables": variables,
                "status": "accepted",
                "reason": None,
                "carrier": carrier,
                "carrier_ids": [],
                "segments": pv["segments"],
                "encoding": pv["encoding"],
                "cost_minor": price * pv["segments"],
                "currency": currency,
                "route": {},
                "link_id": None,
                "attempts": 0,
                "resubmissions": 0,
                "scheduled_at": common.scheduled_at,
                "valid_until": common.valid_until,
                "reference": rcpt.reference,
                "metadata": common.metadata,
                "campaign_id": common.campaign_id,
                "created_at": now,
                "queued_at": None,
                "submitted_at": None,
                "done_at": None,
                "updated_at": now,
            }
        )
        queue.append(
            {
                "message_id": mid,
                "tenant_id": tid,
                "lane": lane,
                "state": 0,
                "claimed_by": None,
                "claimed_at": None,
                "available_at": max(common.scheduled_at or now, now),
                "claims": 0,
            }
        )
        events.append(
            {
                "tenant_id": tid,
                "message_id": mid,
                "kind": "status",
                "status": "accepted",
                "detail": {},
                "at": now,
            }
        )
        out.append(AcceptedMessage(mid, "accepted", pv["segments"], pv["encoding"]))
    if _consume is not None and quota_ref:
        await _consume(session, METER[ch.kind], total_segments, ref=quota_ref)
    for start in range(0, len(messages), 2000):
        await session.execute(insert(table_of(Message)), messages[start : start + 2000])
        await session.execute(insert(table_of(MessageEvent)), events[start : start + 2000])
        await session.execute(insert(table_of(DispatchItem)), queue[start : start + 2000])
    after_commit(session, _wake)
    return out


def _wake() -> None:
    from tessera.connect import dispatcher

    dispatcher.wake()


async def send_message(
    session: AsyncSession, data: MessageIn, *, quota_ref: str | None = None
) -> AcceptedMessage:
    """Store one message (status ``accepted``) in the caller's transaction; the public entry point
    other contexts (campaigns, automations) call."""
    rcpt = Recipient(to=data.to, reference=data.reference)
    return (await send_messages(session, data, [rcpt], quota_ref=quota_ref or f"msg:{uuid7()}"))[0]


async def send_batch(
    session: AsyncSession, data: BatchIn, *, quota_ref: str | None = None
) -> list[AcceptedMessage]:
    return await send_messages(session, data, data.recipients, quota_ref=quota_ref or f"batch:{uuid7()}")
