"""A literal-prefix test in front of each included router.

FastAPI keeps every ``include_router`` as one top-level route and, for each request, asks each of
them in turn whether one of its routes matches; each asks its own routes, regular expression by
regular expression. With about forty routers that walk was the largest single cost of routing a
request (about a sixth of an authenticated read's CPU). A route can only match a path that
starts with the literal part of its path template (everything before the first ``{``), so a router
none of whose routes has a literal prefix of the path cannot match it: ``index_included_routers``
gives each included router that one C-level ``str.startswith`` test before FastAPI's own walk (a
route without path parameters can only match its own path: a set lookup).
The answer for any path is the same as without it (tested against the plain walk for every route
of the application); routers with a host route or a route of another kind are left as they are.

Inside a router that passes the test, FastAPI then asks each of its routes in turn, twice per
request (once to choose the router, once to handle): an identity read walked about twenty
regular expressions each time. The same literal-prefix reasoning applies route by route, so each
indexed router also gets its own route walk (``_match``) that skips, with a ``str.startswith``,
the routes whose literal prefix the path lacks, and asks the others exactly as FastAPI does, in
the same order (the first full match wins, the first partial one is kept). Its answer is kept in
the request's scope, so the second walk of the same request is not made again.

The application's own routes without path parameters (FastAPI's ``/openapi.json``, ``/docs``,
``/docs/oauth2-redirect`` and ``/redoc``, which come before every included router) get the
same whole-path test: they were four regular expressions in front of every request.

Routes added to an included router after indexing are not seen by the test: call
``index_included_routers`` again after changing the routes (``create_app`` calls it once, when
everything is included).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import (
    _FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY,
    _SCOPE_MISSING,
    APIRoute,
    _get_fastapi_scope,
    _IncludedRouter,
    _restore_fastapi_scope_key,
)
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match, Route

Matcher = Callable[[Any], tuple[Match, Any]]


def path_tests(router: _IncludedRouter) -> tuple[tuple[str, ...], frozenset[str]] | None:
    """What a path must pass for one of the router's routes to match it: start with the literal
    prefix of a route with path parameters, or be the whole path of a route without any (its
    pattern is that literal path). None when a route has no literal prefix we can tell."""
    prefixes: set[str] = set()
    exact: set[str] = set()
    for context in router.effective_route_contexts():
        original = context.original_route
        if not isinstance(original, APIRoute | Route) or context.starlette_route is not None:
            return None
        path_format = getattr(context, "path_format", "") or getattr(original, "path_format", "")
        if not path_format.startswith("/"):
            return None
        prefix = path_format.split("{", 1)[0]
        (exact if prefix == path_format else prefixes).add(prefix)
    return tuple(sorted(prefixes)), frozenset(exact)


def _prefixed(plain: Matcher, prefixes: tuple[str, ...], exact: frozenset[str]) -> Matcher:
    none: tuple[Match, dict[str, Any]] = (Match.NONE, {})

    def matches(scope: Any) -> tuple[Match, Any]:
        path = get_route_path(scope)
        if path not in exact and not path.startswith(prefixes):
            return none
        return plain(scope)

    return matches


RouteMatch = tuple[Match, Any, BaseRoute | None, Any]
# Scope key of the last route walk's answer (the walk, the path and method it answered, the answer).
WALK_MEMO = "tessera.route_walk"


def _indexed_walk(router: _IncludedRouter) -> Callable[[Any], RouteMatch]:
    """FastAPI's ``_IncludedRouter._match`` over the router's candidates, skipping the routes
    whose literal prefix the path lacks (``None``: always asked) and the routes without path
    parameters whose path it is not (their pattern is the whole literal path)."""
    entries: list[tuple[str | None, bool, Any]] = []
    for candidate in router.effective_candidates():
        prefix = None
        exact = False
        if not isinstance(candidate, _IncludedRouter) and candidate.starlette_route is None:
            original = candidate.original_route
            path_format = getattr(candidate, "path_format", "") or ""
            if isinstance(original, APIRoute) and path_format.startswith("/"):
                prefix = path_format.split("{", 1)[0]
                exact = prefix == path_format
        entries.append((prefix, exact, candidate))
    none: RouteMatch = (Match.NONE, {}, None, None)

    def walk(scope: Any) -> RouteMatch:
        # FastAPI walks the router that matched twice for one request (to choose it, then to
        # handle); the second walk of the same path and method is the first one's answer.
        path = get_route_path(scope)
        memo = scope.get(WALK_MEMO)
        if memo is not None and memo[0] is walk and memo[1] == path and memo[2] == scope.get("method"):
            found: RouteMatch = memo[3]
            return found
        result = _walk(scope, path)
        scope[WALK_MEMO] = (walk, path, scope.get("method"), result)
        return result

    def _walk(scope: Any, path: str) -> RouteMatch:
        partial: tuple[Any, BaseRoute, Any] | None = None
        for prefix, exact, candidate in entries:
            if prefix is not None:
                if (path != prefix) if exact else not path.startswith(prefix):
                    continue
                # An APIRoute: FastAPI matches it with its effective context in the scope.
                fastapi_scope = _get_fastapi_scope(scope)
                previous = fastapi_scope.get(_FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY, _SCOPE_MISSING)
                fastapi_scope[_FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY] = candidate
                try:
                    match, child_scope = candidate.original_route.matches(scope)
                finally:
                    _restore_fastapi_scope_key(scope, _FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY, previous)
                route: BaseRoute = candidate.original_route
                context = candidate
            elif isinstance(candidate, _IncludedRouter):
                match, child_scope = candidate.matches(scope)
                route, context = candidate, None
            else:
                # Anything else goes through FastAPI's own walk, unchanged.
                return _IncludedRouter._match(router, scope)
            if match == Match.FULL:
                return match, child_scope, route, context
            if match == Match.PARTIAL and partial is None:
                partial = (child_scope, route, context)
        if partial is not None:
            return Match.PARTIAL, partial[0], partial[1], partial[2]
        return none

    return walk


def index_included_routers(app: FastAPI) -> int:
    """Put the prefix test in front of every included router of ``app`` (and the whole-path
    test in front of the application's own routes without path parameters); returns how many
    included routers got one."""
    indexed = 0
    for route in app.router.routes:
        if isinstance(route, Route):
            route.__dict__.pop("matches", None)
            if not route.param_convertors and route.path.startswith("/"):
                route.__dict__["matches"] = _prefixed(route.matches, (), frozenset((route.path,)))
            continue
        if not isinstance(route, _IncludedRouter):
            continue
        tests = path_tests(route)
        # The plain walk is the class's method: re-indexing never stacks two tests.
        plain: Matcher = _IncludedRouter.matches.__get__(route)
        if tests is None:
            route.__dict__.pop("matches", None)
            route.__dict__.pop("_match", None)
            continue
        route.__dict__["matches"] = _prefixed(plain, *tests)
        route.__dict__["_match"] = _indexed_walk(route)
        indexed += 1
    return indexed
