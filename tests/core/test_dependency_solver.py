"""The planned dependency solver answers exactly as FastAPI's own."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import routing as fastapi_routing
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import AliasChoices, BaseModel, Json

from tessera.core.http import solver
from tessera.settings import Settings

CALLS: list[str] = []


async def tenant(request: Request) -> str:
    CALLS.append("tenant")
    return request.headers.get("x-tenant", "none")


async def fails(request: Request) -> str:
    if request.headers.get("x-fail"):
        raise HTTPException(status_code=403, detail="refused")
    return "ok"


async def nested(t: Annotated[str, Depends(tenant)], limit: int = 10) -> str:
    CALLS.append("nested")
    return f"{t}:{limit}"


async def uncached(request: Request) -> int:
    CALLS.append("uncached")
    return len(CALLS)


async def generator() -> AsyncIterator[str]:
    yield "gen"


class Body(BaseModel):
    name: str


class Filter(BaseModel):
    x: int = 0
    y: list[str] = []


def _app() -> FastAPI:
    app = FastAPI()
    router = APIRouter()

    @router.get("/items/{item_id}")
    async def item(
        item_id: int,
        request: Request,
        t: Annotated[str, Depends(tenant)],
        again: Annotated[str, Depends(tenant)],
        n: Annotated[str, Depends(nested)],
        f: Annotated[str, Depends(fails)],
        u1: Annotated[int, Depends(uncached, use_cache=False)],
        u2: Annotated[int, Depends(uncached, use_cache=False)],
        q: Annotated[list[str] | None, Query()] = None,
        flag: bool = False,
    ) -> dict[str, Any]:
        return {
            "item_id": item_id,
            "t": t,
            "again": again,
            "n": n,
            "f": f,
            "u": u2 - u1,
            "q": q,
            "flag": flag,
            "path": request.url.path,
        }

    @router.get("/gen")
    async def gen(g: Annotated[str, Depends(generator)]) -> dict[str, str]:
        return {"g": g}

    @router.get("/header")
    async def header(x_tenant: Annotated[str, Header()]) -> dict[str, str]:
        return {"h": x_tenant}

    @router.post("/body/{item_id}")
    async def body(item_id: int, b: Body, t: Annotated[str, Depends(tenant)]) -> dict[str, Any]:
        return {"item_id": item_id, "name": b.name, "t": t}

    @router.get("/people/{person_id}")
    async def people(
        person_id: uuid.UUID,
        req: int,
        page_size: Annotated[int, Query(alias="page-size", ge=1)] = 20,
        tags: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI copies defaults
        ids: Annotated[list[int] | None, Query()] = None,
        name: Annotated[str | None, Query(max_length=3)] = None,
        j: Annotated[Json[list[int]] | None, Query()] = None,
    ) -> dict[str, Any]:
        return {
            "person_id": str(person_id),
            "req": req,
            "page_size": page_size,
            "tags": tags,
            "ids": ids,
            "name": name,
            "j": j,
        }

    @router.get("/choices")
    async def choices(
        v: Annotated[int, Query(validation_alias=AliasChoices("a", "b"))] = 0,
    ) -> dict[str, int]:
        return {"v": v}

    @router.get("/filtered")
    async def filtered(f: Annotated[Filter, Query()]) -> dict[str, Any]:
        return f.model_dump()

    app.include_router(router)
    return app


PERSON = "0196a7e2-4c1b-7d3e-8f00-123456789abc"


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/items/7", {}),
    ("GET", "/items/7?q=a&q=b&flag=yes&limit=3", {"headers": {"x-tenant": "acme"}}),
    ("GET", "/items/seven?flag=maybe&limit=x", {}),  # three validation errors
    ("GET", "/items/7", {"headers": {"x-fail": "1"}}),
    ("GET", "/gen", {}),
    ("GET", "/header", {"headers": {"x-tenant": "h"}}),
    ("GET", "/header", {}),
    ("POST", "/body/3", {"json": {"name": "n"}}),
    ("POST", "/body/3", {"json": {}}),
    ("GET", f"/people/{PERSON}?req=1", {}),
    ("GET", f"/people/{PERSON}?req=2&page-size=5&tags=a&tags=b&ids=3&ids=4&name=abc", {}),
    ("GET", f"/people/{PERSON}?req=3&tags=&page_size=7&j=", {}),  # empty values; the name is not the alias
    ("GET", "/people/not-a-uuid?page-size=0&ids=1&ids=z&name=long&j=%5Bx", {}),  # errors in each field
    ("GET", f"/people/{PERSON}", {}),  # the required query parameter missing
    ("GET", "/choices?b=4", {}),
    ("GET", "/choices?a=x", {}),
    ("GET", "/filtered?x=3&y=p&y=q", {}),
    ("GET", "/filtered?x=no", {}),
]


async def _answers(app: FastAPI, solve: Any) -> list[tuple[int, Any, list[str]]]:
    previous = fastapi_routing.solve_dependencies
    fastapi_routing.solve_dependencies = solve
    try:
        out = []
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for method, url, kw in REQUESTS:
                CALLS.clear()
                r = await client.request(method, url, **kw)
                out.append((r.status_code, r.json(), list(CALLS)))
        return out
    finally:
        fastapi_routing.solve_dependencies = previous


async def test_planned_solving_answers_as_fastapis_and_calls_the_same_dependencies(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = _app()
    original = solver._original
    unplanned: list[str | None] = []

    async def counting(**kwargs: Any) -> Any:
        unplanned.append(kwargs["dependant"].path)
        return await original(**kwargs)

    monkeypatch.setattr(solver, "_original", counting)
    planned = await _answers(app, solver.solve_dependencies)
    assert "/items/{item_id}" not in unplanned and "/gen" in unplanned  # the plan answered
    plain = await _answers(app, original)
    assert planned == plain
    assert planned[1][0] == 200 and planned[1][1]["n"] == "acme:3" and planned[1][1]["u"] == 1
    assert planned[1][2].count("tenant") == 1  # cached: called once for three uses
    assert planned[1][2].count("uncached") == 2  # use_cache=False: called for each use
    assert planned[2][0] == 422 and len(planned[2][1]["detail"]) == 3
    assert planned[3][0] == 403
    people = planned[9:14]
    assert [status for status, _, _ in people] == [200, 200, 422, 422, 422]
    assert people[1][1] == {
        "person_id": PERSON,
        "req": 2,
        "page_size": 5,
        "tags": ["a", "b"],
        "ids": [3, 4],
        "name": "abc",
        "j": None,
    }
    assert {e["loc"][1] for e in people[3][1]["detail"]} == {
        "person_id",
        "req",
        "page-size",
        "ids",
        "name",
        "j",
    }
    assert planned[14][1] == {"v": 4} and planned[16][1] == {"x": 3, "y": ["p", "q"]}


def test_only_the_covered_shape_gets_a_plan() -> None:
    dependants = {
        c.path_format: c.dependant
        for c in iter_route_contexts(_app().routes)
        if isinstance(c.original_route, APIRoute)
    }
    assert solver.plan_for(dependants["/items/{item_id}"]) is not None
    for path in ("/gen", "/header", "/body/{item_id}"):
        assert solver.plan_for(dependants[path]) is None, path
    # Parameters read from the plan; a parameter model, or several accepted names, are read by
    # FastAPI's request_params_to_args (the rest of the node still planned).
    people = solver.plan_for(dependants["/people/{person_id}"])
    assert people is not None and type(people.path) is tuple and type(people.query) is tuple
    for path in ("/choices", "/filtered"):
        plan = solver.plan_for(dependants[path])
        assert plan is not None and type(plan.query) is list, path


async def test_dependency_overrides_go_to_fastapis_solver() -> None:
    app = _app()
    app.dependency_overrides[tenant] = lambda: "overridden"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        previous = fastapi_routing.solve_dependencies
        fastapi_routing.solve_dependencies = solver.solve_dependencies
        try:
            r = await client.get("/items/1")
        finally:
            fastapi_routing.solve_dependencies = previous
    assert r.status_code == 200 and r.json()["t"] == "overridden"


@pytest.fixture(scope="module")
def tessera_app(settings: Settings) -> FastAPI:
    from tessera.app import create_app

    return create_app(settings)


def test_the_applications_authenticated_reads_are_planned(tessera_app: FastAPI) -> None:
    assert fastapi_routing.solve_dependencies is solver.solve_dependencies  # installed
    planned = total = 0
    for context in iter_route_contexts(tessera_app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute):
            continue
        total += 1
        planned += solver.plan_for(context.dependant) is not None
        if context.path_format == "/v1/users/{user_id}" and "GET" in (route.methods or ()):
            assert solver.plan_for(context.dependant) is not None
    assert total > 100 and planned > total // 3
