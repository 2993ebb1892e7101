"""Channels, SMPP links, route tables, rate cards, portability and signatures.

Secrets (a channel's ``secret``, a link's ``password``) are write-only: accepted on create and
update, never returned, and audited only as "changed". A running gateway notices an edited link
(connection, window, throughput limit, status) on its next link refresh and rebinds it.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect import routing
from tessera.connect.errors import (
    ChannelNotFound,
    DuplicateSignature,
    LinkNotFound,
    MessageInvalid,
    RouteNotFound,
    SignatureNotFound,
)
from tessera.connect.models import Channel, Link, PortedNumber, RateCard, RouteEntry, Signature
from tessera.connect.schemas import (
    ChannelIn,
    ChannelPatch,
    LinkIn,
    LinkPatch,
    RouteIn,
    RoutePatch,
    SignatureIn,
)
from tessera.core.audit import service as audit
from tessera.core.crypto.types import blind_index
from tessera.core.phone import normalize_phone


def _channel_snap(c: Channel) -> dict[str, Any]:
    return {
        "kind": c.kind,
        "name": c.name,
        "status": c.status,
        "default_source": c.default_source,
        "settings": dict(c.settings or {}),
    }


def _link_snap(link: Link) -> dict[str, Any]:
    return {
        "name": link.name,
        "host": link.host,
        "port": link.port,
        "system_id": link.system_id,
        "system_type": link.system_type,
        "window": link.window,
        "tps": link.tps,
        "source_rules": dict(link.source_rules or {}),
        "status": link.status,
    }


def _route_snap(r: RouteEntry) -> dict[str, Any]:
    return {
        "carrier": r.carrier,
        "class": r.message_class,
        "prefix": r.prefix,
        "link_id": str(r.link_id),
        "priority": r.priority,
        "weight": r.weight,
    }


EMAIL_SETTING_FIELDS = ("host", "from", "dkim_selector", "unsubscribe_url", "tls", "port")


def _check_settings(kind: str, settings: dict[str, Any], secret: str | None) -> None:
    """Refuse settings the channel's sender could not use (422 naming ``settings.<key>``)."""
    if kind == "wechat":
        if not str(settings.get("appid") or "").strip():
            raise MessageInvalid("a WeChat channel needs its app id", field="settings.appid", rule="required")
        return
    if kind != "email":
        return
    from tessera.connect.email.pipeline import EmailChannelConfig

    try:
        EmailChannelConfig.from_channel(settings, secret)
    except Exception as exc:  # any value the sender cannot parse is the caller's input error
        text = str(exc)
        if "Expecting" in text or "JSON" in text:
            raise MessageInvalid(
                "the secret is not valid JSON", field="secret", rule="invalid_json"
            ) from None
        field = next((f"settings.{k}" for k in EMAIL_SETTING_FIELDS if f"settings.{k}" in text), None)
        if field is None and "TlsMode" in text:
            field = "settings.tls"
        if field is None:
            key = next((k for k in ("port", "pool_size", "concurrency", "timeout") if k in text), None)
            field = f"settings.{key}" if key else "settings"
        raise MessageInvalid(
            f"the email settings are not usable: {text}", field=field, rule="invalid_setting"
        ) from None


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
    """Change a channel; ``settings`` are merged (a null value removes its key) and checked with
    the secret for the channel's kind before anything is written."""
    c = await get_channel(session, channel_id)
    before = _channel_snap(c)
    changes = data.model_dump(exclude_none=True)
    settings_in = changes.pop("settings", None)
    secret = changes.pop("secret", None)
    if settings_in is not None or secret is not None:
        settings = dict(c.settings or {})
        for k, v in (settings_in or {}).items():
            if v is None:
                settings.pop(k, None)
            else:
                settings[k] = v
        if c.kind == "sms" and secret is not None:
            raise MessageInvalid(
                "an SMS channel has no secret: its links have passwords", field="secret", rule="not_allowed"
            )
        _check_settings(c.kind, settings, secret if secret is not None else c.secret)
        c.settings = settings
        if secret is not None:
            c.secret = secret
    for k, v in changes.items():
        setattr(c, k, v)
    await session.flush()
    after = _channel_snap(c)
    if secret is not None:
        after["secret"] = "changed"
    await audit.record(session, "channel.update", "channel", c.id, before=before, after=after)
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
    link = Link(channel_id=c.id, **data.model_dump(exclude={"source_rules"}))
    link.source_rules = data.source_rules.model_dump() if data.source_rules.allowed else {}
    session.add(link)
    await session.flush()
    await audit.record(session, "link.create", "link", link.id, after=_link_snap(link))
    return link


async def update_link(session: AsyncSession, link_id: uuid.UUID, data: LinkPatch) -> Link:
    """Change a link: fields left out stay, ``tps`` given as null removes the limit."""
    link = await get_link(session, link_id)
    before = _link_snap(link)
    changes = data.model_dump(exclude_none=True, exclude={"source_rules"})
    if "tps" in data.model_fields_set and data.tps is None:
        changes["tps"] = None
    if data.source_rules is not None:
        changes["source_rules"] = data.source_rules.model_dump() if data.source_rules.allowed else {}
    for k, v in changes.items():
        setattr(link, k, v)
    await session.flush()
    after = _link_snap(link)
    if "password" in changes:
        after["password"] = "changed"
    await audit.record(session, "link.update", "link", link.id, before=before, after=after)
    return link


# built once (every SMS send reads it): the statement keeps its cache key across calls
_LINK_RULES = select(Link.source_rules).where(
    Link.channel_id == bindparam("channel_id"), Link.status == "active"
)


async def check_source(session: AsyncSession, channel: Channel, source: str) -> None:
    """Refuse a sender (``source``) that no active link of an SMS channel may send from, by the
    links' source address rules (``{"allowed": [...]}``); a channel without active links is left
    to routing (it rejects with ``route.none``)."""
    if channel.kind != "sms":
        return
    rules = list((await session.execute(_LINK_RULES, {"channel_id": channel.id})).scalars())
    check_source_rules(channel, source, rules)


def check_source_rules(channel: Channel, source: str, rules: list[Any]) -> None:
    """:func:`check_source` with the rules of the channel's active links read already."""
    if channel.kind != "sms":
        return
    if not rules or any(routing.source_allowed(r, source) for r in rules):
        return
    shown = source or "(none)"
    raise MessageInvalid(
        f"the source address {shown} is not allowed by the source address rules of this channel's links",
        field="source",
        rule="source_not_allowed",
    )


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
        .order_by(RouteEntry.priority, RouteEntry.carrier, RouteEntry.prefix, RouteEntry.id)
    )
    return list((await session.execute(stmt)).scalars())


async def _check_route_link(session: AsyncSession, channel_id: uuid.UUID, link_id: uuid.UUID) -> None:
    link = (
        await session.execute(select(Link.id).where(Link.id == link_id, Link.channel_id == channel_id))
    ).first()
    if link is None:
        raise MessageInvalid("the link does not exist on this channel", field="link_id", rule="unknown_link")


async def add_route(session: AsyncSession, channel_id: uuid.UUID, data: RouteIn) -> RouteEntry:
    c = await get_channel(session, channel_id)
    if c.kind != "sms":
        raise MessageInvalid("routes belong to SMS channels", field="channel_id", rule="sms_only")
    await _check_route_link(session, channel_id, data.link_id)
    r = RouteEntry(channel_id=channel_id, **data.model_dump())
    session.add(r)
    await session.flush()
    await audit.record(session, "route.create", "route", r.id, after=_route_snap(r))
    return r


async def get_route(session: AsyncSession, route_id: uuid.UUID) -> RouteEntry:
    r = (await session.execute(select(RouteEntry).where(RouteEntry.id == route_id))).scalar_one_or_none()
    if r is None:
        raise RouteNotFound()
    return r


async def update_route(session: AsyncSession, route_id: uuid.UUID, data: RouteIn | RoutePatch) -> RouteEntry:
    """Replace a route (:class:`RouteIn`) or change some of its fields (:class:`RoutePatch`:
    ``carrier``, ``link_id``, ``priority``, ``weight`` null = unchanged; ``class``, ``prefix``
    null = any)."""
    r = await get_route(session, route_id)
    if isinstance(data, RoutePatch):
        changes = data.model_dump(exclude_unset=True)
        for k in ("carrier", "link_id", "priority", "weight"):
            if changes.get(k, 0) is None:
                changes.pop(k)
    else:
        changes = data.model_dump()
    if "link_id" in changes:
        await _check_route_link(session, r.channel_id, changes["link_id"])
    before = _route_snap(r)
    for k, v in changes.items():
        setattr(r, k, v)
    await session.flush()
    await audit.record(session, "route.update", "route", r.id, before=before, after=_route_snap(r))
    return r


async def delete_route(session: AsyncSession, route_id: uuid.UUID) -> None:
    r = await get_route(session, route_id)
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
