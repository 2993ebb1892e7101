"""Channels, SMPP links, route tables, rate cards, portability and signatures."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.errors import (
    ChannelNotFound,
    DuplicateSignature,
    LinkNotFound,
    MessageInvalid,
    RouteNotFound,
    SignatureNotFound,
)
from tessera.connect.models import Channel, Link, PortedNumber, RateCard, RouteEntry, Signature
from tessera.connect.schemas import ChannelIn, ChannelPatch, LinkIn, LinkPatch, RouteIn, SignatureIn
from tessera.core.audit import service as audit
from tessera.core.crypto.types import blind_index
from tessera.core.phone import normalize_phone


def _channel_snap(c: Channel) -> dict[str, Any]:
    return {"kind": c.kind, "name": c.name, "status": c.status, "default_source": c.default_source}


def _link_snap(link: Link) -> dict[str, Any]:
    return {
        "name": link.name,
        "host": link.host,
        "port": link.port,
        "system_id": link.system_id,
        "window": link.window,
        "tps": link.tps,
        "status": link.status,
    }


async def get_channel(session: AsyncSession, channel_id: uuid.UUID) -> Channel:
    c = (await session.execute(select(Channel).where(Channel.id == channel_id))).scalar_one_or_none()
    if c is None:
        raise ChannelNotFound()
    return c


async def list_channels(session: AsyncSession) -> list[Channel]:
    return list((await session.execute(select(Channel).order_by(Channel.created_at, Channel.id))).scalars())


async def create_channel(session: AsyncSession, data: ChannelIn) -> Channel:
    c = Channel(
        kind=data.kind,
        name=data.name,
        default_source=data.default_source,
        settings=data.settings,
        secret=data.secret,
        status="active",
    )
    session.add(c)
    await session.flush()
    await audit.record(session, "channel.create", "channel", c.id, after=_channel_snap(c))
    return c


async def update_channel(session: AsyncSession, channel_id: uuid.UUID, data: ChannelPatch) -> Channel:
    c = await get_channel(session, channel_id)
    before = _channel_snap(c)
    for k, v in data.model_dump(exclude_none=True).items():
        setattr(c, k, v)
    await session.flush()
    await audit.record(session, "channel.update", "channel", c.id, before=before, after=_channel_snap(c))
    return c


async def get_link(session: AsyncSession, link_id: uuid.UUID) -> Link:
    link = (await session.execute(select(Link).where(Link.id == link_id))).scalar_one_or_none()
    if link is None:
        raise LinkNotFound()
    return link


async def list_links(session: AsyncSession, channel_id: uuid.UUID) -> list[Link]:
    await get_channel(session, channel_id)
    stmt = select(Link).where(Link.channel_id == channel_id).order_by(Link.created_at, Link.id)
    return list((await session.execute(stmt)).scalars())


async def create_link(session: AsyncSession, channel_id: uuid.UUID, data: LinkIn) -> Link:
    c = await get_channel(session, channel_id)
    if c.kind != "sms":
        raise MessageInvalid("SMPP links belong to SMS channels", field="channel_id", rule="sms_only")
    link = Link(channel_id=c.id, **data.model_dump())
    session.add(link)
    await session.flush()
    await audit.record(session, "link.create", "link", link.id, after=_link_snap(link))
    return link


async def update_link(session: AsyncSession, link_id: uuid.UUID, data: LinkPatch) -> Link:
    link = await get_link(session, link_id)
    before = _link_snap(link)
    for k, v in data.model_dump(exclude_none=True).items():
        setattr(link, k, v)
    await session.flush()
    await audit.record(session, "link.update", "link", link.id, before=before, after=_link_snap(link))
    return link


async def delete_link(session: AsyncSession, link_id: uuid.UUID) -> None:
    link = await get_link(session, link_id)
    before = _link_snap(link)
    await session.delete(link)
    await session.flush()
    await audit.record(session, "link.delete", "link", link_id, before=before)


async def list_routes(session: AsyncSession, channel_id: uuid.UUID) -> list[RouteEntry]:
    await get_channel(session, channel_id)
    stmt = (
        select(RouteEntry)
        .where(RouteEntry.channel_id == channel_id)
        .order_by(RouteEntry.priority, RouteEntry.carrier, RouteEntry.id)
    )
    return list((await session.execute(stmt)).scalars())


async def add_route(session: AsyncSession, channel_id: uuid.UUID, data: RouteIn) -> RouteEntry:
    await get_channel(session, channel_id)
    link = (
        await session.execute(select(Link).where(Link.id == data.link_id, Link.channel_id == channel_id))
    ).scalar_one_or_none()
    if link is None:
        raise MessageInvalid("the link does not exist on this channel", field="link_id", rule="unknown_link")
    r = RouteEntry(channel_id=channel_id, **data.model_dump())
    session.add(r)
    await session.flush()
    await audit.record(session, "route.create", "route", r.id, after=data.model_dump(mode="json"))
    return r


async def update_route(session: AsyncSession, route_id: uuid.UUID, data: RouteIn) -> RouteEntry:
    r = (await session.execute(select(RouteEntry).where(RouteEntry.id == route_id))).scalar_one_or_none()
    if r is None:
        raise RouteNotFound()
    link = (
        await session.execute(select(Link).where(Link.id == data.link_id, Link.channel_id == r.channel_id))
    ).scalar_one_or_none()
    if link is None:
        raise MessageInvalid("the link does not exist on this channel", field="link_id", rule="unknown_link")
    before = {"carrier": r.carrier, "link_id": str(r.link_id), "priority": r.priority, "weight": r.weight}
    for k, v in data.model_dump().items():
        setattr(r, k, v)
    await session.flush()
    await audit.record(
        session, "route.update", "route", r.id, before=before, after=data.model_dump(mode="json")
    )
    return r


async def delete_route(session: AsyncSession, route_id: uuid.UUID) -> None:
    r = (await session.execute(select(RouteEntry).where(RouteEntry.id == route_id))).scalar_one_or_none()
    if r is None:
        raise RouteNotFound()
    await session.delete(r)
    await session.flush()
    await audit.record(session, "route.delete", "route", route_id)


async def set_rate(
    session: AsyncSession, channel_kind: str, carrier: str, price_minor: int, currency: str = "CNY"
) -> RateCard:
    stmt = select(RateCard).where(RateCard.channel_kind == channel_kind, RateCard.carrier == carrier)
    rc = (await session.execute(stmt)).scalar_one_or_none()
    if rc is None:
        rc = RateCard(channel_kind=channel_kind, carrier=carrier, price_minor=price_minor, currency=currency)
        session.add(rc)
    else:
        rc.price_minor, rc.currency = price_minor, currency
    await session.flush()
    return rc


async def set_ported(session: AsyncSession, number: str, carrier: str) -> PortedNumber:
    e164 = normalize_phone(number, "CN", field="number")
    idx = blind_index("phone", e164)
    row = (
        await session.execute(select(PortedNumber).where(PortedNumber.number_index == idx))
    ).scalar_one_or_none()
    if row is None:
        row = PortedNumber(number_index=idx, carrier=carrier)
        session.add(row)
    else:
        row.carrier = carrier
    await session.flush()
    return row


async def list_signatures(session: AsyncSession) -> list[Signature]:
    return list(
        (await session.execute(select(Signature).order_by(Signature.created_at, Signature.id))).scalars()
    )


async def create_signature(session: AsyncSession, data: SignatureIn) -> Signature:
    text = data.text.strip().strip("【】")
    if not text:
        raise MessageInvalid("a signature needs a brand name", field="text", rule="required")
    exists = (await session.execute(select(Signature.id).where(Signature.text == text))).first()
    if exists:
        raise DuplicateSignature(field="text")
    s = Signature(text=text, status="pending", is_default=data.is_default)
    session.add(s)
    await session.flush()
    await audit.record(session, "signature.create", "signature", s.id, after={"text": text})
    return s


async def review_signature(session: AsyncSession, signature_id: uuid.UUID, approve: bool) -> Signature:
    s = (await session.execute(select(Signature).where(Signature.id == signature_id))).scalar_one_or_none()
    if s is None:
        raise SignatureNotFound()
    before = {"status": s.status}
    s.status = "approved" if approve else "rejected"
    await session.flush()
    await audit.record(
        session, "signature.review", "signature", s.id, before=before, after={"status": s.status}
    )
    return s
