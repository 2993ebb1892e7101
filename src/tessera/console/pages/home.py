"""Home dashboard (tiles, activity chart), global search and saved views of list pages."""

from __future__ import annotations

import datetime as dt
import urllib.parse
import zoneinfo
from typing import Annotated

from fastapi import Depends, Request
from fastapi.responses import Response
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.console import i18n
from tessera.console.components import Chart
from tessera.console.i18n import _
from tessera.console.models import SavedView
from tessera.console.registry import SEARCH, TILES, SearchHit, Tile, register_search, register_tile
from tessera.console.web import PREFIX, Page, console_router, page
from tessera.core.access.principal import Principal
from tessera.core.audit import service as audit
from tessera.core.audit.models import AuditEvent
from tessera.core.db.base import utcnow
from tessera.core.http.errors import InvalidInput, NotFound
from tessera.core.identity.models import ApiKey, User

router = console_router()
Anyone = Annotated[Page, Depends(page())]


def _day_start(tz: str) -> dt.datetime:
    local = utcnow().astimezone(zoneinfo.ZoneInfo(tz))
    return local.replace(hour=0, minute=0, second=0, microsecond=0).astimezone(dt.UTC)


async def _count(session: AsyncSession, stmt) -> int:  # type: ignore[no-untyped-def]
    return int((await session.execute(stmt)).scalar_one())


@register_tile
async def users_tile(session: AsyncSession, principal: Principal) -> Tile | None:
    if not principal.has("users:read"):
        return None
    n = await _count(session, select(func.count()).select_from(User).where(User.status == "active"))
    return Tile(_("Active users"), i18n.format_number(n), f"{PREFIX}/admin/users?status=active", order=10)


@register_tile
async def keys_tile(session: AsyncSession, principal: Principal) -> Tile | None:
    if not principal.has("admin:api_keys"):
        return None
    n = await _count(session, select(func.count()).select_from(ApiKey).where(ApiKey.revoked_at.is_(None)))
    return Tile(_("Active API keys"), i18n.format_number(n), f"{PREFIX}/admin/api-keys", order=20)


@register_tile
async def activity_tiles(session: AsyncSession, principal: Principal) -> Tile | None:
    if not principal.has("audit:read"):
        return None
    since = _day_start(i18n.current_timezone())
    n = await _count(
        session, select(func.count()).select_from(AuditEvent).where(AuditEvent.created_at >= since)
    )
    return Tile(
        _("Changes today"),
        i18n.format_number(n),
        f"{PREFIX}/admin/audit",
        order=30,
        hint=_("Audit log entries since midnight"),
    )


@register_tile
async def signins_tile(session: AsyncSession, principal: Principal) -> Tile | None:
    if not principal.has("audit:read"):
        return None
    since = _day_start(i18n.current_timezone())
    n = await _count(
        session,
        select(func.count())
        .select_from(AuditEvent)
        .where(AuditEvent.created_at >= since, AuditEvent.action == "auth.login"),
    )
    return Tile(
        _("Sign-ins today"), i18n.format_number(n), f"{PREFIX}/admin/audit?action=auth.login", order=40
    )


async def activity_chart(session: AsyncSession, days: int = 14) -> Chart:
    """Audit entries per day in the tenant's time zone: one query summing per-day buckets, so
    the cost does not grow with the number of entries (the day boundaries are computed here,
    which keeps the query the same on SQLite and PostgreSQL)."""
    tz = zoneinfo.ZoneInfo(i18n.current_timezone())
    first = (_day_start(i18n.current_timezone()) - dt.timedelta(days=days - 1)).astimezone(tz).date()
    bounds = [
        dt.datetime.combine(first + dt.timedelta(days=i), dt.time(), tzinfo=tz).astimezone(dt.UTC)
        for i in range(days + 1)
    ]
    buckets = [
        func.coalesce(
            func.sum(
                case(
                    (and_(AuditEvent.created_at >= bounds[i], AuditEvent.created_at < bounds[i + 1]), 1),
                    else_=0,
                )
            ),
            0,
        )
        for i in range(days)
    ]
    row = (await session.execute(select(*buckets).where(AuditEvent.created_at >= bounds[0]))).one()
    labels = [(first + dt.timedelta(days=i)).strftime("%m-%d") for i in range(days)]
    values = [int(v or 0) for v in row]
    return Chart(
        "activity",
        _("Activity, last 14 days"),
        "bar",
        labels,
        [{"label": _("Audit log entries"), "data": values, "backgroundColor": "#206bc4"}],
        {
            "animation": False,
            "plugins": {"legend": {"display": False}},
            "scales": {"y": {"beginAtZero": True, "ticks": {"precision": 0}}},
        },
    )


@router.get("/")
@router.get("")
async def home(pg: Anyone) -> Response:
    assert pg.principal
    tiles = []
    for fn in TILES:
        t = await fn(pg.session, pg.principal)
        if t is not None:
            tiles.append(t)
    tiles.sort(key=lambda t: t.order)
    chart = await activity_chart(pg.session) if pg.can("audit:read") else None
    return pg.render("console/home.html", tiles=tiles, chart=chart)


@register_search
async def search_users(session: AsyncSession, principal: Principal, q: str) -> list[SearchHit]:
    if not principal.has("users:read"):
        return []
    pattern = "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    rows = (
        (
            await session.execute(
                select(User)
                .where(or_(User.name.ilike(pattern, escape="\\"), User.email.ilike(pattern, escape="\\")))
                .order_by(User.name)
                .limit(8)
            )
        )
        .scalars()
        .all()
    )
    href = f"{PREFIX}/admin/users/" if principal.has("admin:users") else None
    return [
        SearchHit(
            u.name,
            f"{href}{u.id}" if href else f"{PREFIX}/search?q={urllib.parse.quote(u.email)}",
            _("User"),
            u.email if principal.can_see_pii else "",
        )
        for u in rows
    ]


@router.get("/search")
async def search(pg: Anyone, q: str = "") -> Response:
    assert pg.principal
    q = q.strip()[:100]
    hits: list[SearchHit] = []
    if len(q) >= 2:
        for provider in SEARCH:
            hits.extend(await provider(pg.session, pg.principal, q))
    tpl = "console/search_results.html" if pg.partial else "console/search.html"
    return pg.render(tpl, q=q, hits=hits)


@router.post("/views")
async def save_view(pg: Anyone, request: Request) -> Response:
    raw = await request.form()
    name = str(raw.get("name") or "").strip()
    key = str(raw.get("page") or "")
    if not name or len(name) > 100:
        raise InvalidInput(_("A view needs a name of at most 100 characters."), field="name")
    if not key or len(key) > 100:
        raise InvalidInput("page is required", field="page")
    query = str(raw.get("query") or "")[:2000]
    assert pg.principal and pg.principal.user_id
    view = SavedView(
        user_id=pg.principal.user_id,
        page=key,
        name=name,
        query=query,
        shared=raw.get("shared") in ("on", "true", "1"),
    )
    pg.session.add(view)
    await pg.session.flush()
    if view.shared:
        await audit.record(
            pg.session,
            "console.view_share",
            "saved_view",
            view.id,
            after={"name": name, "page": key, "query": query},
        )
    nxt = str(raw.get("next") or f"{PREFIX}/")
    if not nxt.startswith(PREFIX + "/"):
        nxt = f"{PREFIX}/"
    return pg.redirect(f"{nxt}?{query}" if query else nxt, toast=_("View saved."))


@router.post("/views/{view_id}/delete")
async def delete_view(view_id: str, pg: Anyone) -> Response:
    import uuid

    try:
        vid = uuid.UUID(view_id)
    except ValueError:
        raise NotFound() from None
    assert pg.principal
    view = (
        await pg.session.execute(
            select(SavedView).where(SavedView.id == vid, SavedView.user_id == pg.principal.user_id)
        )
    ).scalar_one_or_none()
    if view is None:
        raise NotFound()
    await pg.session.delete(view)
    return pg.redirect(f"{PREFIX}/", toast=_("View deleted."))
