"""FastAPI's dependency solving, planned once per endpoint for the common shape.

For every request FastAPI's ``solve_dependencies`` walks the endpoint's dependency tree and, at
each node, asks again what it already knew when the route was built: whether the callable is a
generator (two cached classifications, each hashing a wrapper object), its cache key (the OAuth
scopes of the node and its parents, sorted), and the node's path, query, header and cookie
parameters (four calls, which build the request's query parameters, headers and cookies even
for a node that declares none). For an authenticated read that was about a tenth of its CPU.

:func:`solve_dependencies` answers from a plan made once per dependant (:class:`_Plan`) when
the whole tree has the shape the plan covers: nodes whose parameters are path and query
parameters and the request itself, and sub-dependencies that are plain ``async def`` functions
(no generators, no threads, no concurrency limits, no security scopes, no body, header, cookie,
response or background-task parameters). It does what FastAPI does for such a tree, in the same
order: each sub-dependency is solved (its own sub-dependencies first) and called, or taken from
the request's dependency cache when it was already called; its errors are collected and it is
skipped; path and query parameters are read and validated as FastAPI's ``request_params_to_args``
reads and validates them, with what it works out per field on every request (whether the field
is a parameter model, its request key, whether it is a sequence) worked out once
(:class:`_Param`; a parameter model or several accepted names leave the node's parameters to
``request_params_to_args`` itself).
Everything else (request bodies, generator dependencies, dependency overrides, WebSockets)
goes to FastAPI's function unchanged. ``install`` puts it in place of the name FastAPI's
request handlers call. Tests send the same requests through both solvers (a test application
covering each part of the shape, and the fallbacks) and compare answers and dependency calls,
and check that the application's authenticated reads are planned.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import routing as fastapi_routing
from fastapi.dependencies import utils as fastapi_deps
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import SolvedDependency, request_params_to_args
from fastapi.dependencies.utils import _validate_value_with_model_field as validate_field
from starlette.datastructures import Headers, ImmutableMultiDict
from starlette.requests import Request
from starlette.responses import Response

_original = fastapi_deps.solve_dependencies


class _Param:
    """A path or query parameter as ``request_params_to_args`` reads it."""

    __slots__ = ("field", "key", "listed", "loc", "name", "sequence")

    def __init__(self, field: Any) -> None:
        aliases = fastapi_deps._get_param_aliases(field)
        if fastapi_deps._get_param_model(field) is not None or len(aliases) != 1:
            raise _Unplanned
        self.field = field
        self.name = field.name
        self.key = aliases[0][1]
        self.loc = (field.field_info.in_.value, self.key)
        # A sequence reads every value of a repeated key (unless it is a Json field), and
        # an empty sequence counts as missing.
        self.sequence = fastapi_deps.field_annotation_is_sequence(field.field_info.annotation)
        self.listed = self.sequence and not fastapi_deps._is_json_field(field)


class _Unplanned(Exception):
    """A node's parameters that only ``request_params_to_args`` reads."""


def _plan_params(fields: list[Any]) -> tuple[_Param, ...] | list[Any]:
    """The planned parameters, or the fields themselves for ``request_params_to_args``."""
    try:
        return tuple(_Param(field) for field in fields)
    except _Unplanned:
        return fields


def _params_to_args(
    params: tuple[_Param, ...] | list[Any], received: Any
) -> tuple[dict[str, Any], list[Any]]:
    if isinstance(params, list):
        return request_params_to_args(params, received)
    values: dict[str, Any] = {}
    errors: list[Any] = []
    multi = isinstance(received, (ImmutableMultiDict, Headers))
    for param in params:
        value = received.getlist(param.key) if param.listed and multi else received.get(param.key, None)
        if value is None or (param.sequence and len(value) == 0):
            value = fastapi_deps.Undefined  # defaults apply during validation
        found, found_errors = validate_field(field=param.field, value=value, values=values, loc=param.loc)
        if found_errors:
            errors.extend(found_errors)
        else:
            values[param.name] = found
    return values, errors


class _Plan:
    __slots__ = ("http_name", "path", "query", "request_name", "subs")

    def __init__(self, dependant: Dependant, subs: list[tuple[Dependant, _Plan, Any]]) -> None:
        self.subs = subs
        self.path = _plan_params(dependant.path_params) if dependant.path_params else None
        self.query = _plan_params(dependant.query_params) if dependant.query_params else None
        self.request_name = dependant.request_param_name
        self.http_name = dependant.http_connection_param_name


# id(dependant) -> (dependant, plan or None when FastAPI must solve it); dependants live as long
# as their routes, and the dependant is kept so that its id is never reused for another.
_plans: dict[int, tuple[Dependant, _Plan | None]] = {}


def _make_plan(dependant: Dependant, *, top: bool) -> _Plan | None:
    if (
        dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
        or dependant.websocket_param_name
        or dependant.response_param_name
        or dependant.background_tasks_param_name
        or dependant.security_scopes_param_name
        or dependant.own_oauth_scopes
        or dependant.parent_oauth_scopes
    ):
        return None
    if not top and (dependant.concurrency is not None or not inspect.iscoroutinefunction(dependant.call)):
        return None
    subs: list[tuple[Dependant, _Plan, Any]] = []
    for sub in dependant.dependencies:
        plan = _make_plan(sub, top=False)
        if plan is None:
            return None
        # FastAPI's cache key for a node without security scopes: (call, (), computed scope).
        key = fastapi_deps._get_cache_key(dependant=sub)
        subs.append((sub, plan, key))
    return _Plan(dependant, subs)


def plan_for(dependant: Dependant) -> _Plan | None:
    """The plan of an endpoint's dependant, or None when FastAPI's solver must handle it."""
    found = _plans.get(id(dependant))
    if found is None or found[0] is not dependant:
        found = _plans[id(dependant)] = (dependant, _make_plan(dependant, top=True))
    return found[1]


async def _solve(plan: _Plan, request: Request, cache: dict[Any, Any]) -> tuple[dict[str, Any], list[Any]]:
    values: dict[str, Any] = {}
    errors: list[Any] = []
    for sub, sub_plan, key in plan.subs:
        sub_values, sub_errors = await _solve(sub_plan, request, cache)
        if sub_errors:
            errors.extend(sub_errors)
            continue
        if sub.use_cache and key in cache:
            solved = cache[key]
        else:
            solved = await sub.call(**sub_values)  # type: ignore[misc]
        if sub.name is not None:
            values[sub.name] = solved
        if key not in cache:
            cache[key] = solved
    if plan.path is not None:
        found, path_errors = _params_to_args(plan.path, request.path_params)
        values.update(found)
        errors += path_errors
    if plan.query is not None:
        found, query_errors = _params_to_args(plan.query, request.query_params)
        values.update(found)
        errors += query_errors
    if plan.http_name:
        values[plan.http_name] = request
    if plan.request_name:
        values[plan.request_name] = request
    return values, errors


async def solve_dependencies(
    *,
    request: Any,
    dependant: Dependant,
    body: Any = fastapi_deps.Undefined,
    background_tasks: Any = None,
    response: Response | None = None,
    dependency_overrides_provider: Any | None = None,
    dependency_cache: dict[Any, Any] | None = None,
    **kwargs: Any,
) -> SolvedDependency:
    """FastAPI's ``solve_dependencies``: from the dependant's plan when it has one."""
    plan = (
        plan_for(dependant)
        if (
            type(request) is Request
            and body is fastapi_deps.Undefined
            and background_tasks is None
            and response is None
            and dependency_cache is None
            and not getattr(dependency_overrides_provider, "dependency_overrides", None)
        )
        else None
    )
    if plan is None:
        return await _original(
            request=request,
            dependant=dependant,
            body=body,
            background_tasks=background_tasks,
            response=response,
            dependency_overrides_provider=dependency_overrides_provider,
            dependency_cache=dependency_cache,
            **kwargs,
        )
    cache: dict[Any, Any] = {}
    values, errors = await _solve(plan, request, cache)
    response = Response()
    del response.headers["content-length"]
    response.status_code = None  # type: ignore[assignment]
    return SolvedDependency(
        values=values, errors=errors, background_tasks=None, response=response, dependency_cache=cache
    )


def install() -> None:
    """Let FastAPI's request handlers call :func:`solve_dependencies`."""
    fastapi_routing.solve_dependencies = solve_dependencies  # type: ignore[assignment]
