"""Sending: validate, render, check compliance, price, consume quota and store messages durably.

One call stores every message of a request in the caller's transaction with multi-row inserts;
the request answers 202 only once that transaction has committed. Invalid input (a bad number,
a missing variable) refuses the whole request and nothing is stored. Then the compliance check
(:func:`~tessera.connect.compliance.service.check_outbound_many`, batched: a constant number of
queries whatever the number of recipients) decides each message:

- allowed: stored ``accepted`` with replace-words applied, queued for the dispatcher;
- deferred by quiet hours (marketing): stored ``accepted`` and queued for the end of the window;
- held for review: stored ``held`` (not queued) with a review; approving the review releases it
  (:func:`release_held`), rejecting it makes it ``rejected``;
- refused (block/empty lists, opt-out, frequency cap, blocked word): a single send answers 422
  with the code and the field and stores nothing; a batch stores the message ``rejected`` with
  the code as its reason and reports it in its per-recipient results.

Committed messages wake the dispatcher at once: an after-commit callback for the gateway in this
process and, on PostgreSQL, a ``NOTIFY`` delivered at commit for gateways in other processes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, bindparam, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect import encoding
from tessera.connect import push as code_push
from tessera.connect.compliance import service as compliance
from tessera.connect.compliance.errors import ComplianceInvalid
from tessera.connect.email.content import EMAIL_VARIABLES_KEY, render_email_parts
from tessera.connect.errors import REFUSALS, MessageInvalid, MessageRefused
from tessera.connect.models import (
    LANES,
    Channel,
    Link,
    RateCard,
    Signature,
    Template,
)
from tessera.connect.repository import (
    MessageRepository,
    code_push_gateways,
    dispatch_payload,
    notify_payload,
)
from tessera.connect.schemas import BatchIn, MessageIn, Recipient
from tessera.connect.service.channels import check_source, check_source_rules
from tessera.connect.service.templates import render
from tessera.core import context
from tessera.core.crypto.types import blind_index
from tessera.core.db.base import utcnow, uuid7
from tessera.core.db.session import after_commit
from tessera.core.phone import InvalidPhone, carrier_name, normalize_phone

try:  # the subscription kernel is optional at import time
    from tessera.core.subscription.service import consume as _consume
except ImportError:  # pragma: no cover
    _consume = None  # type: ignore[assignment]

METER = {
    "sms": "messages.sms",
    "wechat": "messages.wechat",
    "email": "messages.email",
    "voice": "messages.voice",
}
HELD = "held"
YIELD_EVERY = 250  # a large batch lets the event loop run other requests between slices of it
RECIPIENT_FIELD_CODES = frozenset(
    {
        "message.recipient_opted_out",
        "message.recipient_blocked",
        "message.recipient_empty_number",
        "message.frequency_capped",
    }
)


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """The outcome for one recipient: ``status`` is ``accepted``, ``held`` or ``rejected``."""

    id: uuid.UUID
    status: str
    segments: int
    encoding: str
    code: str | None = None
    field: str | None = None
    message: str | None = None
    not_before: dt.datetime | None = None


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
    rates: dict[str, tuple[int, str]] | None = None  # read with the channel (PostgreSQL)


# The send path's lookups are built once: a statement object keeps its cache key (and the
# tenant guard's) from one call to the next, where building one per call cost about as much
# as its round trip.
_CHANNEL_BY_ID = select(Channel).where(Channel.status == "active", Channel.id == bindparam("channel_id"))
_CHANNEL_OF_KIND = (
    select(Channel)
    .where(Channel.status == "active", Channel.kind == bindparam("kind"))
    .order_by(Channel.created_at, Channel.id)
    .limit(1)
)
_SIGNATURE_BY_TEXT = select(Signature).where(
    Signature.status == "approved", Signature.text == bindparam("text")
)
_DEFAULT_SIGNATURE = (
    select(Signature).where(Signature.status == "approved", Signature.is_default.is_(True)).limit(1)
)
_RATES = select(RateCard.carrier, RateCard.price_minor, RateCard.currency).where(
    RateCard.channel_kind == bindparam("kind")
)


def _send_context_stmt(by_id: bool) -> Any:
    """PostgreSQL: the channel with what a send reads of it besides (the source address rules
    of its active links, the default signature, the rate card of its kind) in one statement,
    built once per form; the tenant guard and row-level security scope every subquery."""
    rules = (
        select(func.json_agg(Link.source_rules))
        .where(Link.channel_id == Channel.id, Link.status == "active")
        .scalar_subquery()
    )
    rates = (
        select(
            func.json_agg(func.json_build_array(RateCard.carrier, RateCard.price_minor, RateCard.currency))
        )
        .where(RateCard.channel_kind == Channel.kind)
        .scalar_subquery()
    )
    signature = _DEFAULT_SIGNATURE.with_only_columns(Signature.text).scalar_subquery()
    return (_CHANNEL_BY_ID if by_id else _CHANNEL_OF_KIND).add_columns(
        type_coerce(rules, JSON()).label("link_rules"),
        signature.label("default_signature"),
        type_coerce(rates, JSON()).label("rates"),
    )


_SEND_CONTEXT: dict[bool, Any] = {}


@dataclass(frozen=True, slots=True)
class _SendContext:
    """What :func:`_send_context_stmt` read besides the channel."""

    link_rules: list[Any]
    signature: str
    rates: dict[str, tuple[int, str]]


async def _channel_with_context(
    session: AsyncSession, channel_id: uuid.UUID | None, kind: str
) -> tuple[Channel, _SendContext]:
    by_id = channel_id is not None
    stmt = _SEND_CONTEXT.get(by_id)
    if stmt is None:
        stmt = _SEND_CONTEXT[by_id] = _send_context_stmt(by_id)
    params = {"channel_id": channel_id} if by_id else {"kind": kind}
    row = (await session.execute(stmt, params)).first()
    ch = _checked_channel(row[0] if row is not None else None, channel_id, kind)
    assert row is not None
    rates = {carrier: (price, currency) for carrier, price, currency in row.rates or ()}
    sig = row.default_signature
    return ch, _SendContext(list(row.link_rules or ()), f"【{sig}】" if sig else "", rates)


async def resolve_channel(session: AsyncSession, channel_id: uuid.UUID | None, kind: str) -> Channel:
    if channel_id is not None:
        result = await session.execute(_CHANNEL_BY_ID, {"channel_id": channel_id})
    else:
        result = await session.execute(_CHANNEL_OF_KIND, {"kind": kind})
    return _checked_channel(result.scalars().first(), channel_id, kind)


def _checked_channel(ch: Channel | None, channel_id: uuid.UUID | None, kind: str) -> Channel:
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
    if text is not None:
        s = (
            await session.execute(_SIGNATURE_BY_TEXT, {"text": text.strip().strip("【】")})
        ).scalar_one_or_none()
        if s is None:
            raise MessageInvalid(
                "the signature is not approved", field="signature", rule="signature_not_approved"
            )
        return f"【{s.text}】"
    s = (await session.execute(_DEFAULT_SIGNATURE)).scalars().first()
    return f"【{s.text}】" if s else ""


async def _common(session: AsyncSession, data: MessageIn | BatchIn) -> _Common:
    pre: _SendContext | None = None
    if data.template_id is None and data.signature is None and _is_postgres(session):
        # the usual send (no template, the default signature): one read instead of four
        ch, pre = await _channel_with_context(session, data.channel_id, data.channel)
    else:
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
    if pre is None:
        await check_source(session, ch, data.source or ch.default_source)  # the links' source address rules
    else:
        check_source_rules(ch, data.source or ch.default_source, pre.link_rules)
    return _Common(
        channel=ch,
        message_class=data.message_class,
        template=template,
        body=body,
        signature=pre.signature
        if pre is not None and ch.kind == "sms"
        else await _signature(session, ch, data.signature),
        source=data.source or ch.default_source,
        scheduled_at=data.scheduled_at,
        valid_until=start + dt.timedelta(minutes=data.validity_minutes) if data.validity_minutes else None,
        campaign_id=data.campaign_id,
        metadata=data.metadata,
        rates=pre.rates if pre is not None else None,
    )


async def _rates(session: AsyncSession, kind: str) -> dict[str, tuple[int, str]]:
    rows = (await session.execute(_RATES, {"kind": kind})).all()
    return {carrier: (price, currency) for carrier, price, currency in rows}


def _destination(ch: Channel, raw: str, field: str) -> tuple[str, str, compliance.Address]:
    """Normalised recipient, its carrier (SMS) and its compliance address; 422 naming ``field``."""
    if ch.kind in ("sms", "voice"):
        try:
            e164 = normalize_phone(raw, "CN", field=field)
        except InvalidPhone as exc:
            raise MessageInvalid(exc.message, field=field, rule="invalid_phone") from None
        return e164, carrier_name(e164), compliance.Address("phone", e164)
    if ch.kind == "email":
        try:
            addr = compliance.normalize_address(raw, field=field)
        except ComplianceInvalid as exc:
            raise MessageInvalid(
                exc.message, field=field, rule=exc.details.get("rule", "invalid_email")
            ) from None
        if addr.kind != "email":
            raise MessageInvalid("not an email address", field=field, rule="invalid_email")
        return addr.value, "", addr
    if not raw.strip() or len(raw) > 64:
        raise MessageInvalid("not a WeChat openid", field=field, rule="invalid_openid")
    return raw.strip(), "", compliance.Address("openid", raw.strip())


def _refusal(d: compliance.ComplianceDecision, *, to_field: str, body_field: str) -> MessageRefused:
    cls = REFUSALS.get(d.code or "", MessageRefused)
    field = to_field if d.code in RECIPIENT_FIELD_CODES else (d.part or body_field)
    return cls(d.message or "the message was refused", field=field, rule=d.code or "refused")


def _preview(kind: str, text: str, cache: dict[str, Any]) -> Any:
    pv = cache.get(text)
    if pv is None:
        pv = (
            encoding.preview(text)
            if kind == "sms"
            else {"encoding": "utf8", "segments": 1, "characters": len(text), "parts": [text]}
        )
        if len(cache) < 1000:
            cache[text] = pv
    return pv


async def send_messages(
    session: AsyncSession,
    data: MessageIn | BatchIn,
    recipients: Sequence[Recipient],
    *,
    quota_ref: str | None = None,
    refuse: bool = False,
    decisions: Sequence[compliance.ComplianceDecision] | None = None,
    ids: Sequence[uuid.UUID] | None = None,
) -> list[AcceptedMessage]:
    """Validate, check and store one message per recipient in the caller's transaction.

    Raises :class:`MessageInvalid` (422, naming the field and rule) before anything is written.
    With ``refuse`` a compliance refusal raises too (:class:`MessageRefused`, its code naming
    the reason); otherwise the refused message is stored ``rejected``. ``decisions`` are the
    caller's own compliance decisions, one per recipient (it checked already); ``ids``: the
    messages' ids, chosen by the caller (so it can write them before the send, see
    :func:`send_message`)."""
    common = await _common(session, data)
    ch = common.channel
    rates = common.rates if common.rates is not None else await _rates(session, ch.kind)
    tid = context.current_tenant_id()
    now = utcnow()
    lane = LANES[common.message_class]
    shared = dict(getattr(data, "variables", {}) or {})
    single = isinstance(data, MessageIn)
    index_kind = {"sms": "phone", "voice": "phone", "email": "email"}.get(ch.kind, "openid")
    body_field = "template_id" if common.template is not None else "body"
    # 1. validate and render every recipient (all or nothing)
    rendered: list[tuple[str, str, str, compliance.Address, dict[str, str], str]] = []
    for i, rcpt in enumerate(recipients):
        if i and not i % YIELD_EVERY:
            await asyncio.sleep(0)
        prefix = "" if single else f"recipients.{i}."
        to, carrier, addr = _destination(ch, rcpt.to, f"{prefix}to")
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
        rendered.append((to, carrier, blind_index(index_kind, to), addr, variables, text))
    # 2. compliance, batched
    if decisions is None:
        decisions = await compliance.check_outbound_many(
            session,
            channel=ch.kind,
            message_class=common.message_class,
            recipients=[(r[3], r[5]) for r in rendered],
            indexes=[r[2] for r in rendered],
            now=now,
            email_parts=[_email_parts(r[4], data.html) for r in rendered] if ch.kind == "email" else None,
        )
    if refuse:
        for i, d in enumerate(decisions):
            if d.verdict in ("reject", "block"):
                prefix = "" if single else f"recipients.{i}."
                raise _refusal(d, to_field=f"{prefix}to", body_field=body_field)
    # 3. rows
    messages: list[dict[str, Any]] = []
    queue: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    holds: list[tuple[uuid.UUID, str, str, compliance.ComplianceDecision]] = []
    out: list[AcceptedMessage] = []
    charged_segments = 0
    preview_cache: dict[str, Any] = {}
    start_at = max(common.scheduled_at or now, now)
    for i, ((to, carrier, to_index, _addr, variables, text), d) in enumerate(
        zip(rendered, decisions, strict=True)
    ):
        if i and not i % YIELD_EVERY:
            await asyncio.sleep(0)
        mid = ids[i] if ids is not None else uuid7()
        refused = d.verdict in ("reject", "block")
        body = text if refused else d.replaced_body
        if ch.kind == "email" and not refused and d.replaced_subject is not None:
            variables = _with_checked_parts(variables, d)
        pv = _preview(ch.kind, body, preview_cache)
        price, currency = rates.get(carrier) or rates.get("*") or (0, "CNY")
        scheduled_at, available_at = common.scheduled_at, start_at
        status, reason, detail, done_at = "accepted", None, {}, None
        if refused:
            status, reason, done_at = "rejected", d.code, now
            detail = {"reason": d.code}
        elif d.verdict == "hold" and d.not_before is None:
            status, reason = HELD, d.code
            detail = {"reason": d.code}
            holds.append((mid, to, body, d))
        elif d.verdict == "hold" and d.not_before is not None and d.not_before > available_at:
            scheduled_at = available_at = d.not_before
            detail = {"deferred_until": d.not_before.isoformat(), "reason": d.code}
        if not refused:
            charged_segments += pv["segments"]
        messages.append(
            {
                "id": mid,
                "tenant_id": tid,
                "channel_id": ch.id,
                "channel_kind": ch.kind,
                "message_class": common.message_class,
                "to": to,
                "to_index": to_index,
                "source": common.source,
                "body": body,
                "template_id": common.template.id if common.template else None,
                "variables": variables,
                "status": status,
                "reason": reason,
                "carrier": carrier,
                "carrier_ids": [],
                "segments": pv["segments"],
                "encoding": pv["encoding"],
                "cost_minor": 0 if refused else price * pv["segments"],
                "currency": currency,
                "route": {},
                "link_id": None,
                "attempts": 0,
                "resubmissions": 0,
                "scheduled_at": scheduled_at,
                "valid_until": common.valid_until,
                "reference": recipients[i].reference,
                "metadata": common.metadata,
                "campaign_id": common.campaign_id,
                "created_at": now,
                "queued_at": None,
                "submitted_at": None,
                "done_at": done_at,
                "updated_at": now,
            }
        )
        if status == "accepted":
            queue.append(
                {
                    "message_id": mid,
                    "tenant_id": tid,
                    "lane": lane,
                    "state": 0,
                    "claimed_by": None,
                    "claimed_at": None,
                    "available_at": available_at,
                    "claims": 0,
                }
            )
        events.append(
            {
                "tenant_id": tid,
                "message_id": mid,
                "kind": "status",
                "status": status,
                "detail": detail,
                "at": now,
            }
        )
        out.append(
            AcceptedMessage(
                mid,
                status,
                pv["segments"],
                pv["encoding"],
                code=d.code,
                field=(
                    f"{'' if single else f'recipients.{i}.'}to"
                    if d.code in RECIPIENT_FIELD_CODES
                    else body_field
                )
                if d.code
                else None,
                message=d.message or None,
                not_before=scheduled_at if d.not_before is not None else None,
            )
        )
    # the gateways' wake-up goes in the insert's own statement: a verification code is pushed
    # to a gateway with its message when one takes pushed codes (tessera.connect.push)
    note, push_index = None, None
    target = await _push_target(session, lane, ch.kind, queue, now) if queue else None
    if target is not None:
        pushed = next(m for m in messages if m["id"] == queue[0]["message_id"])
        note = code_push.announcement(target, pushed)
        if note is not None:
            queue[0].update(state=2, claimed_by=target, claimed_at=now)
            push_index = pushed["to_index"]
    if note is None and queue:
        note = _announcement(session, lane)
    await MessageRepository(session).insert_many(messages, events, queue, notify=note, push_index=push_index)
    if holds:
        await compliance.hold_many_for_review(
            session, channel=ch.kind, message_class=common.message_class, held=holds
        )
    # Last: the quota counter's row stays locked until commit, and every send of the tenant
    # waits for it, so nothing else of this request runs while it is held.
    if _consume is not None and quota_ref and charged_segments:
        await _consume(session, METER.get(ch.kind, f"messages.{ch.kind}"), charged_segments, ref=quota_ref)
    return out


def _email_parts(variables: dict[str, Any], html_template: str | None = None) -> compliance.EmailParts:
    """The rendered subject and HTML part of an email (``$email``), for the compliance check;
    with the HTML template and values a batch parses the template once, not every rendering."""
    parts = variables.get(EMAIL_VARIABLES_KEY) or {}
    subject, html = str(parts.get("subject") or ""), parts.get("html")
    if html_template is None or html is None:
        return compliance.EmailParts(subject, html)
    values = tuple(sorted((k, str(v)) for k, v in variables.items() if k != EMAIL_VARIABLES_KEY))
    return compliance.EmailParts(subject, html, html_template, values)


def _with_checked_parts(variables: dict[str, Any], d: compliance.ComplianceDecision) -> dict[str, Any]:
    """The variables with the subject and HTML part as the check left them (replace-words)."""
    return {**variables, EMAIL_VARIABLES_KEY: {"subject": d.replaced_subject, "html": d.replaced_html}}


async def _announce(session: AsyncSession, lane: int) -> None:
    """Wake the dispatchers once this transaction commits (never for a rolled-back one)."""
    payload = _announcement(session, lane)
    if payload is not None:
        await notify_payload(session, payload)


def _announcement(session: AsyncSession, lane: int) -> str | None:
    """Wake the dispatchers of this process after commit; the ``NOTIFY`` payload for those of
    other processes, ``None`` when this transaction announced ``lane`` already."""
    lanes: set[int] = session.info.setdefault("connect_wake_lanes", set())
    if lane in lanes:
        return None
    tid = context.current_tenant_id_or_none()
    if not lanes:
        after_commit(session, lambda: _wake(min(lanes), tid))
    lanes.add(lane)
    return dispatch_payload(lane, tid)


async def _push_target(
    session: AsyncSession, lane: int, kind: str, queue: list[dict[str, Any]], now: dt.datetime
) -> str | None:
    """The gateway to push a code to: one verification SMS, ready now (not deferred), on
    PostgreSQL, and a gateway that takes pushed codes (their list read at most every
    ``push.TARGETS_TTL``); ``None``: announce it to every gateway as before."""
    if lane != 0 or kind != "sms" or len(queue) != 1 or queue[0]["available_at"] > now:
        return None
    if not _is_postgres(session):
        return None
    if code_push.targets.due():
        code_push.targets.set(await code_push_gateways(session, utcnow() - code_push.FRESH))
    return code_push.targets.pick()


def _wake(lane: int, tenant_id: uuid.UUID | None) -> None:
    from tessera.connect import dispatcher

    dispatcher.wake(lane, tenant_id)


async def send_message(
    session: AsyncSession,
    data: MessageIn,
    *,
    quota_ref: str | None = None,
    decision: compliance.ComplianceDecision | None = None,
    message_id: uuid.UUID | None = None,
) -> AcceptedMessage:
    """Store one message in the caller's transaction; the public entry point other contexts
    (campaigns, automations, verification) call. A compliance refusal raises
    :class:`MessageRefused` (422 with the reason's code, naming the field); a message held for
    review is stored ``held``. ``decision``: the caller's own compliance check of this message;
    ``message_id``: the id to give the message. The send ends by spending the tenant's quota,
    whose counter row stays locked until commit: a caller that records the message id lets
    its own writes go first (with an id chosen up front) so the lock is held for the commit
    only."""
    rcpt = Recipient(to=data.to, reference=data.reference)
    return (
        await send_messages(
            session,
            data,
            [rcpt],
            quota_ref=quota_ref or f"msg:{uuid7()}",
            refuse=True,
            decisions=[decision] if decision is not None else None,
            ids=[message_id] if message_id is not None else None,
        )
    )[0]


async def send_batch(
    session: AsyncSession, data: BatchIn, *, quota_ref: str | None = None
) -> list[AcceptedMessage]:
    """Store one message per recipient (in order); refused recipients are stored ``rejected``
    and reported with their code and field, so one opted-out number never fails a campaign."""
    return await send_messages(session, data, data.recipients, quota_ref=quota_ref or f"batch:{uuid7()}")


async def release_held(session: AsyncSession, message_id: uuid.UUID) -> str:
    """Release a message held for review (an approved review): check it again (an opt-out or a
    block since it was held still wins), then queue it. Returns the message's new status."""
    repo = MessageRepository(session)
    m = await repo.for_release(message_id)
    if m is None or m.status != HELD:
        return m.status if m is not None else "missing"
    kind = m.channel_kind
    addr = (
        compliance.Address("phone", m.to)
        if kind in ("sms", "voice")
        else compliance.normalize_address(m.to, channel=kind)
    )
    with compliance.released_after_review():
        [d] = await compliance.check_outbound_many(
            session,
            channel=kind,
            message_class=m.message_class,
            recipients=[(addr, m.body)],
            indexes=[m.to_index],
            email_parts=[_email_parts(m.variables or {})] if kind == "email" else None,
        )
    now = utcnow()
    tid = context.current_tenant_id()
    if d.verdict in ("reject", "block"):
        await repo.set_status(
            message_id, "rejected", reason=d.code, done_at=now, updated_at=now, cost_minor=0
        )
        await repo.insert_many(
            [],
            [_event(tid, message_id, "rejected", {"reason": d.code}, now)],
            [],
        )
        return "rejected"
    available = max(m.scheduled_at or now, d.not_before or now, now)
    email: dict[str, Any] = {}
    if kind == "email" and d.replaced_subject is not None:
        email["variables"] = _with_checked_parts(m.variables or {}, d)
    await repo.set_status(
        message_id,
        "accepted",
        reason=None,
        body=d.replaced_body,
        updated_at=now,
        scheduled_at=available if available > now else m.scheduled_at,
        **email,
    )
    lane = LANES[m.message_class]
    await repo.insert_many(
        [],
        [_event(tid, message_id, "accepted", {"released": True}, now)],
        [
            {
                "message_id": message_id,
                "tenant_id": tid,
                "lane": lane,
                "state": 0,
                "claimed_by": None,
                "claimed_at": None,
                "available_at": available,
                "claims": 0,
            }
        ],
    )
    await _announce(session, lane)
    return "accepted"


async def reject_held(session: AsyncSession, message_id: uuid.UUID, reason: str) -> None:
    """A rejected review: the held message becomes ``rejected`` (never sent)."""
    repo = MessageRepository(session)
    m = await repo.for_release(message_id)
    if m is None or m.status != HELD:
        return
    now = utcnow()
    await repo.set_status(message_id, "rejected", reason=reason, done_at=now, updated_at=now, cost_minor=0)
    await repo.insert_many(
        [], [_event(context.current_tenant_id(), message_id, "rejected", {"reason": reason}, now)], []
    )


def _event(
    tid: uuid.UUID, mid: uuid.UUID, status: str, detail: dict[str, Any], now: dt.datetime
) -> dict[str, Any]:
    return {
        "tenant_id": tid,
        "message_id": mid,
        "kind": "status",
        "status": status,
        "detail": detail,
        "at": now,
    }


def _is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"
