"""Extension points other contexts use to plug into the console.

* :func:`register_nav` — a sidebar entry, shown only to principals holding its permission and,
  when the subscription kernel is present, only if the tenant's plan includes its module.
* :func:`register_search` — a global search provider: ``async (session, principal, q) -> [SearchHit]``.
* :func:`register_tile` — a home dashboard tile: ``async (session, principal) -> Tile | None``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core.access.principal import Principal


@dataclass(frozen=True)
class NavItem:
    key: str
    label: str  # an English msgid; translated when rendered
    href: str
    permission: str | None = None
    section: str = "main"  # "main" or "admin"
    module: str | None = None  # subscription module key; None = always included
    order: int = 100


@dataclass(frozen=True)
class SearchHit:
    label: str
    href: str
    kind: str  # shown as a small badge: "User", "Contact", …
    detail: str = ""


@dataclass(frozen=True)
class Tile:
    label: str
    value: str
    href: str | None = None
    hint: str = ""
    order: int = 100
    chart: dict[str, Any] | None = field(default=None)  # a Chart.js config, rendered as JSON


SearchProvider = Callable[[AsyncSession, Principal, str], Awaitable[list[SearchHit]]]
TileProvider = Callable[[AsyncSession, Principal], Awaitable["Tile | None"]]

NAV: list[NavItem] = []
SEARCH: list[SearchProvider] = []
TILES: list[TileProvider] = []


def register_nav(item: NavItem) -> NavItem:
    if not any(n.key == item.key for n in NAV):
        NAV.append(item)
        NAV.sort(key=lambda n: (n.section != "main", n.order))
    return item


def register_search(provider: SearchProvider) -> SearchProvider:
    if provider not in SEARCH:
        SEARCH.append(provider)
    return provider


def register_tile(fn: TileProvider) -> TileProvider:
    if fn not in TILES:
        TILES.append(fn)
    return fn


def entitled_modules(entitlements: Any) -> set[str] | None:
    """The module keys of an ``effective_entitlements`` result, or None if it has no notion of them."""
    mods = getattr(entitlements, "modules", None)
    if mods is None and isinstance(entitlements, dict):
        mods = entitlements.get("modules")
    return set(mods) if mods is not None else None


async def visible_nav(session: AsyncSession, principal: Principal) -> list[NavItem]:
    allowed_modules: set[str] | None = None
    try:
        from tessera.core.subscription import service as subscription
    except ImportError:  # an installation without the subscription kernel shows every module
        subscription = None  # type: ignore[assignment]
    if subscription is not None:
        # It reads the tenant in scope (bound by the console's authentication).
        ent = await subscription.effective_entitlements(session)
        allowed_modules = entitled_modules(ent)
    out = []
    for item in NAV:
        if item.permission and not principal.has(item.permission):
            continue
        if item.module and allowed_modules is not None and item.module not in allowed_modules:
            continue
        out.append(item)
    return out
