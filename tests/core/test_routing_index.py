"""The literal-prefix test in front of included routers answers exactly as FastAPI's plain walk."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import _IncludedRouter
from starlette.routing import Match, Route

from tessera.app import create_app
from tessera.core.http.routing import WALK_MEMO, index_included_routers, path_tests
from tessera.settings import Settings

SAMPLES = ("1", "00000000-0000-4000-8000-000000000000", "abc", "a/b")


def _scope(path: str, method: str) -> dict[str, Any]:
    return {
        "type": "http",
        "path": path,
        "root_path": "",
        "method": method,
        "headers": [],
        "query_string": b"",
    }


def _paths(app: FastAPI) -> list[str]:
    paths: set[str] = {
        "/",
        "/v1",
        "/v1/",
        "/nope",
        "/v1/users/",
        "/console",
        "/console/x/y",
        "/u",
        "/v1/userz/1",
        "/docs",
        "/docs/",
        "/docs/oauth2-redirect",
        "/redoc",
        "/redoc/x",
        "/openapi.json",
        "/openapi.jsonx",
    }
    for route in app.router.routes:
        if isinstance(route, _IncludedRouter):
            for context in route.effective_route_contexts():
                template = context.path_format
                for sample in SAMPLES:
                    concrete = re.sub(r"\{[^}]*\}", sample, template)
                    paths.update({concrete, concrete + "/", concrete.rstrip("/"), concrete + "/extra"})
                    paths.add(concrete[:-1] if len(concrete) > 1 else concrete)
    return sorted(p for p in paths if p)


@pytest.fixture(scope="module")
def app(settings: Settings) -> FastAPI:
    # The session's settings: a bare create_app() would point the process at the default
    # data directory and database, under the tests that run after this module.
    return create_app(settings)


def test_every_included_router_gets_the_prefix_test(app: FastAPI) -> None:
    routers = [r for r in app.router.routes if isinstance(r, _IncludedRouter)]
    assert routers
    assert all("matches" in r.__dict__ for r in routers)
    # Re-indexing replaces the test rather than stacking a second one.
    assert index_included_routers(app) == len(routers)
    users = next(
        r
        for r in routers
        if any(c.path_format == "/v1/users/{user_id}" for c in r.effective_route_contexts())
    )
    tests = path_tests(users)
    assert tests is not None
    assert "/v1/users/" in tests[0] and "/v1/users" in tests[1]  # /v1/users/{user_id}, /v1/users


def test_the_prefix_test_answers_as_the_plain_walk_for_every_route(app: FastAPI) -> None:
    routers = [r for r in app.router.routes if isinstance(r, _IncludedRouter)]
    checked = matched = 0
    for path in _paths(app):
        for method in ("GET", "POST", "DELETE"):
            for router in routers:
                fast = router.matches(_scope(path, method))
                plain = _IncludedRouter.matches(router, _scope(path, method))
                assert fast[0] == plain[0], (path, method, router.original_router)
                checked += 1
                matched += plain[0] != Match.NONE
    # The comparison covers real matches, not only misses.
    assert matched > 300
    assert checked > 10_000


def test_the_applications_own_routes_answer_as_their_plain_match(app: FastAPI) -> None:
    own = [r for r in app.router.routes if isinstance(r, Route)]
    assert {r.path for r in own} >= {"/openapi.json", "/docs", "/redoc"}
    assert all("matches" in r.__dict__ for r in own if not r.param_convertors)
    matched = 0
    for path in _paths(app):
        for method in ("GET", "POST", "HEAD"):
            for route in own:
                fast = route.matches(_scope(path, method))
                plain = Route.matches(route, _scope(path, method))
                assert fast == plain, (path, method, route.path)
                matched += plain[0] != Match.NONE
    assert matched >= 12  # each route's own path, each method (a partial match for the others)


def test_the_route_walk_inside_a_router_answers_as_fastapis_for_every_route(app: FastAPI) -> None:
    routers = [r for r in app.router.routes if isinstance(r, _IncludedRouter)]
    assert all("_match" in r.__dict__ for r in routers)
    checked = matched = 0
    for path in _paths(app):
        for method in ("GET", "POST", "DELETE"):
            for router in routers:
                fast_scope, plain_scope = _scope(path, method), _scope(path, method)
                fast = router._match(fast_scope)
                plain = _IncludedRouter._match(router, plain_scope)
                assert fast[0] == plain[0], (path, method, router.original_router)
                assert fast[1] == plain[1], (path, method)  # path params, endpoint
                assert fast[2] is plain[2] and fast[3] is plain[3], (path, method)
                # The walk leaves the scope as FastAPI's does (which may add an empty "fastapi"
                # dict), apart from the memo of its answer.
                assert fast_scope.pop(WALK_MEMO)[3] is fast
                for sc in (fast_scope, plain_scope):
                    if sc.get("fastapi") == {}:
                        del sc["fastapi"]
                assert fast_scope == plain_scope, (path, method)
                checked += 1
                matched += plain[0] != Match.NONE
    assert matched > 300
    assert checked > 10_000


def test_a_router_with_a_route_added_after_indexing_is_seen_once_reindexed(app: FastAPI) -> None:
    probe = FastAPI()
    from fastapi import APIRouter

    router = APIRouter(prefix="/probe")

    @router.get("/a")
    async def a() -> dict[str, str]:
        return {"a": "a"}

    probe.include_router(router)
    index_included_routers(probe)
    included = next(r for r in probe.router.routes if isinstance(r, _IncludedRouter))
    assert included.matches(_scope("/probe/a", "GET"))[0] == Match.FULL
    assert included.matches(_scope("/other/a", "GET"))[0] == Match.NONE

    @router.get("/b/{x}")
    async def b(x: str) -> dict[str, str]:
        return {"b": x}

    index_included_routers(probe)
    assert included.matches(_scope("/probe/b/1", "GET"))[0] == Match.FULL
    assert included._match(_scope("/probe/b/1", "POST"))[0] == Match.PARTIAL  # method not allowed


def test_the_second_walk_of_a_request_is_the_first_ones_answer(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fastapi.routing import APIRoute

    asked: list[str] = []
    plain_matches = APIRoute.matches

    def counting(self: APIRoute, scope: Any) -> Any:
        asked.append(self.path)
        return plain_matches(self, scope)

    monkeypatch.setattr(APIRoute, "matches", counting)
    users = next(
        r
        for r in app.router.routes
        if isinstance(r, _IncludedRouter)
        and any(c.path_format == "/v1/users/{user_id}" for c in r.effective_route_contexts())
    )
    scope = _scope("/v1/users/00000000-0000-4000-8000-000000000000", "GET")
    first = users._match(scope)
    assert first[0] == Match.FULL and asked
    walked = len(asked)
    assert users._match(scope) is first
    assert len(asked) == walked  # no route asked again
    # Another path or method in the same scope is walked afresh.
    scope["method"] = "DELETE"
    again = users._match(scope)
    assert len(asked) > walked and again is not first
    scope["path"] = "/v1/users"
    scope["method"] = "GET"
    assert users._match(scope)[3] is not first[3]
