"""A literal-prefix test in front of each included router.

FastAPI keeps every ``include_router`` as one top-level route and, for each request, asks each of
them in turn whether one of its routes matches; each asks its own routes, regular expression by
regular expression. With about forty routers that walk was the largest single cost of routing a
request (about a sixth of an authenticated read's CPU). A route can only match a path that
starts with the literal part of its path template (everything before the first ``{``), so a router
none of whose routes has a literal prefix of the path cannot match it: ``index_included_routers``
gives each included router that one C-level ``str.startswith`` test before FastAPI's own walk.
The answer for any path is the same as without it (tested against the plain walk for every route
of the application); routers with a host route or a route of another kind are left as they are.

Routes added to an included router after indexing are not seen by the test: call
``index_included_routers`` again after changing the routes (``create_app`` calls it once, when
everything is included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, _IncludedRouter
from starlette._utils import get_route_path
from starlette.routing import Match, Route

Matcher = Callable[[Any], tuple[Match, Any]]


def literal_prefixes(router: _IncludedRouter) -> tuple[str, ...] | None:
    """The literal prefixes of the router's routes, or None when one of them has none we can tell."""
    prefixes: set[str] = set()
    for context in router.effective_route_contexts():
        original = context.original_route
        if not isinstance(original, APIRoute | Route) or context.starlette_route is not None:
            return None
        path_format = getattr(context, "path_format", "") or getattr(original, "path_format", "")
        if not path_format.startswith("/"):
            return None
        prefixes.add(path_format.split("{", 1)[0])
    return tuple(sorted(prefixes))


def _prefixed(plain: Matcher, prefixes: tuple[str, ...]) -> Matcher:
    none: tuple[Match, dict[str, Any]] = (Match.NONE, {})

    def matches(scope: Any) -> tuple[Match, Any]:
        if not get_route_path(scope).startswith(prefixes):
            return none
        return plain(scope)

    return matches


def index_included_routers(app: FastAPI) -> int:
    """Put the prefix test in front of every included router of ``app``; returns how many got one."""
    indexed = 0
    for route in app.router.routes:
        if not isinstance(route, _IncludedRouter):
            continue
        prefixes = literal_prefixes(route)
        # The plain walk is the class's method: re-indexing never stacks two tests.
        plain: Matcher = _IncludedRouter.matches.__get__(route)
        if prefixes is None:
            route.__dict__.pop("matches", None)
            continue
        route.__dict__["matches"] = _prefixed(plain, prefixes)
        indexed += 1
    return indexed
