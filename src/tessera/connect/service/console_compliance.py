"""Reads the Connect II console pages need (compliance, inbound, verification, email).

Nothing here writes: the pages call the compliance, inbound and verify services for changes.
Queries run through the repositories or the guard-scoped session (the tenant filter is added
by ``core/db/guard.py``), so every read is the signed-in tenant's own.
"""

from __future__ import annotations

import datetime as dt
import statistics
import uuid
import zoneinfo
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import dkim as dkimpy
from cryptography.hazmat.primitives import serialization
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.compliance import service as compliance
from tessera.connect.compliance.models import OptOut, Review
from tessera.connect.compliance.normalize import normalize
from tessera.connect.compliance.repository import OptOutRepository
from tessera.connect.email.compose import compose_email
from tessera.connect.email.dkim import DkimKey, DkimSigner, dns_record_name, dns_txt_record
from tessera.connect.inbound.models import AutoReplyRule, InboundMessage
from tessera.connect.models import Channel, Message
from tessera.connect.verify.models import Verification
from tessera.core.crypto.types import blind_index
from tessera.core.http.listing import FilterField, FilterSet

OPT_OUT_CHANNELS = ("sms", "wechat", "email", "voice")


# --- compliance --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextCheck:
    text: str
    normalized: str
    verdict: str
    replaced: str
    hits: list[dict[str, Any]]


async def check_text(session: AsyncSession, text: str) -> TextCheck:
    """Run ``text`` through the tenant's matcher (global + tenant words); writes nothing."""
    scan = (await compliance.get_matcher(session)).scan(text)
    hits = [
        {
            "word": h.word,
            "category": h.category,
            "action": str(h.action),
            "matched": h.matched,
            "start": h.start,
            "end": h.end,
            "replacement": h.replacement,
        }
        for h in scan.hits
    ]
    return TextCheck(text, normalize(text), str(scan.verdict), scan.replaced_text, hits)


async def find_opt_outs(session: AsyncSession, address: str) -> list[OptOut]:
    """The opt-outs of one number or email on every channel (exact match by blind index)."""
    addr = compliance.normalize_address(address, field="address")
    index = blind_index(addr.kind, addr.value)
    repo = OptOutRepository(session)
    out = []
    for channel in OPT_OUT_CHANNELS:
        row = await repo.find(channel, index)
        if row is not None:
            out.append(row)
    return out


async def pending_reviews(session: AsyncSession) -> int:
    stmt = select(func.count()).select_from(Review).where(Review.status == "pending")
    return int((await session.execute(stmt)).scalar_one())


# --- inbound -----------------------------------------------------------------------------------

INBOUND_FILTERS = FilterSet(
    fields={
        "channel": FilterField(InboundMessage.channel, str, ("eq",), choices=OPT_OUT_CHANNELS),
        "body": FilterField(InboundMessage.body, str, ("contains",)),
        "received_at": FilterField(InboundMessage.received_at, dt.datetime, ("gte", "lte")),
    },
    sortable={"received_at": InboundMessage.received_at},
    default_sort="-received_at",
    id_column=InboundMessage.id,
)


async def rule_keywords(session: AsyncSession) -> dict[uuid.UUID, str]:
    rows = await session.execute(select(AutoReplyRule.id, AutoReplyRule.keyword))
    return {rid: kw for rid, kw in rows.all()}


# --- verification statistics -------------------------------------------------------------------


@dataclass
class Bucket:
    key: str
    sent: int = 0
    delivered: int = 0
    approved: int = 0
    times: list[float] = field(default_factory=list)

    @property
    def conversion(self) -> float:
        return round(100.0 * self.approved / self.sent, 1) if self.sent else 0.0

    @property
    def avg_seconds(self) -> float | None:
        return round(sum(self.times) / len(self.times), 2) if self.times else None

    @property
    def p50_seconds(self) -> float | None:
        return round(statistics.median(self.times), 2) if self.times else None


@dataclass
class VerifyStats:
    days: list[Bucket]
    templates: list[Bucket]
    total: Bucket


async def verify_stats(session: AsyncSession, *, days: int, tz: str, now: dt.datetime) -> VerifyStats:
    """Per local day (tenant time zone) and per template over the last ``days`` days.

    Delivered and time to delivery follow ``verify.service.stats``: the SMS receipt (or the
    message's final ``delivered``) or an answered voice call."""
    zone = zoneinfo.ZoneInfo(tz)
    first = now.astimezone(zone).date() - dt.timedelta(days=days - 1)
    since = dt.datetime.combine(first, dt.time(0), tzinfo=zone).astimezone(dt.UTC)
    stmt = (
        select(
            Verification.template,
            Verification.status,
            Verification.created_at,
            Verification.delivered_at,
            Verification.voice_status,
            Message.status,
            Message.done_at,
        )
        .outerjoin(Message, Message.id == Verification.message_id)
        .where(Verification.created_at >= since)
    )
    by_day = {
        (first + dt.timedelta(days=i)).isoformat(): Bucket((first + dt.timedelta(days=i)).isoformat())
        for i in range(days)
    }
    by_template: dict[str, Bucket] = {}
    total = Bucket("total")
    for template, status, created, delivered_at, voice_status, msg_status, done_at in (
        await session.execute(stmt)
    ).all():
        created = created if created.tzinfo else created.replace(tzinfo=dt.UTC)
        day = by_day.get(created.astimezone(zone).date().isoformat())
        tpl = by_template.setdefault(template, Bucket(template))
        at = delivered_at or (done_at if msg_status == "delivered" else None)
        if at is not None and at.tzinfo is None:
            at = at.replace(tzinfo=dt.UTC)
        for b in (day, tpl, total):
            if b is None:
                continue
            b.sent += 1
            if at is not None or voice_status == "answered":
                b.delivered += 1
                if at is not None:
                    b.times.append(max(0.0, (at - created).total_seconds()))
            if status == "approved":
                b.approved += 1
    return VerifyStats(list(by_day.values()), sorted(by_template.values(), key=lambda b: b.key), total)


async def recent_verifications(session: AsyncSession, limit: int = 50) -> list[Verification]:
    stmt = select(Verification).order_by(Verification.created_at.desc(), Verification.id.desc()).limit(limit)
    return list((await session.execute(stmt)).scalars())


# --- email channels and DKIM -------------------------------------------------------------------


@dataclass(frozen=True)
class DkimStatus:
    key_present: bool
    selector: str
    domain: str
    record_name: str
    record_value: str
    error: str = ""

    @property
    def configured(self) -> bool:
        return self.key_present and bool(self.selector) and bool(self.domain) and not self.error


async def email_channels(session: AsyncSession) -> list[Channel]:
    stmt = select(Channel).where(Channel.kind == "email").order_by(Channel.created_at, Channel.id)
    return list((await session.execute(stmt)).scalars())


async def email_channel(session: AsyncSession, channel_id: uuid.UUID) -> Channel | None:
    stmt = select(Channel).where(Channel.id == channel_id, Channel.kind == "email")
    return (await session.execute(stmt)).scalar_one_or_none()


def dkim_status(channel: Channel) -> DkimStatus:
    st = channel.settings or {}
    selector = str(st.get("dkim_selector") or "")
    domain = str(st.get("dkim_domain") or "")
    pem = channel.secret or ""
    name = dns_record_name(selector, domain) if selector and domain else ""
    if not pem:
        return DkimStatus(False, selector, domain, name, "")
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        public = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        record = dns_txt_record(public)
    except (ValueError, TypeError):
        return DkimStatus(True, selector, domain, name, "", error="invalid_key")
    return DkimStatus(True, selector, domain, name, record)


def check_dkim(channel: Channel) -> str:
    """Sign a test message with the channel's key and verify it against the TXT record shown.

    One of ``verified``, ``not_configured``, ``invalid_key``, ``sign_failed``, ``not_verified``."""
    status = dkim_status(channel)
    if status.error:
        return "invalid_key"
    if not status.configured:
        return "not_configured"
    sender = str((channel.settings or {}).get("from_address") or f"check@{status.domain}")
    msg: EmailMessage = compose_email(
        sender=sender, to=f"dkim-check@{status.domain}", subject="DKIM check", text="DKIM check"
    )
    key = DkimKey(status.selector, status.domain, (channel.secret or "").encode())
    try:
        raw = DkimSigner(key).sign(msg)
    except Exception:  # dkimpy raises several unrelated types
        return "sign_failed"
    record = status.record_value.encode()

    def dns(name: bytes, timeout: int = 5) -> bytes:
        return record if name.rstrip(b".").decode() == status.record_name else b""

    return "verified" if dkimpy.verify(raw, dnsfunc=dns) else "not_verified"
