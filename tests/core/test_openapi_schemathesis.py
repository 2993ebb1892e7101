"""Property-based API test: schemathesis generates requests from the app's own OpenAPI document.

Every operation of every mounted module is called in-process with an admin API key of a fresh
tenant (operator operations answer 401 to it, which they document); no response may be a 5xx
and every status code must be documented.
The generated cases are run on pytest's event loop (where the database pool lives) while
Hypothesis drives generation from a worker thread. ``TESSERA_SCHEMATHESIS_EXAMPLES`` sets examples
per operation.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import status_code_conformance

from tests.conftest import TenantWorld

EXAMPLES = int(os.environ.get("TESSERA_SCHEMATHESIS_EXAMPLES", "12"))


def _send(loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient, kw: dict[str, Any]) -> httpx.Response:
    request: dict[str, Any] = {
        "method": kw["method"],
        "url": kw["url"],
        "headers": kw.get("headers"),
        "params": kw.get("params"),
        "cookies": kw.get("cookies"),
    }
    if "json" in kw:
        request["json"] = kw["json"]
    elif "data" in kw:
        data = kw["data"]
        request["content" if isinstance(data, bytes | str) else "data"] = data
    fut = asyncio.run_coroutine_threadsafe(client.request(**request), loop)
    return fut.result(timeout=60)


@pytest.mark.slow
async def test_openapi_conformance(app: Any, client: httpx.AsyncClient, tenant: TenantWorld) -> None:
    schema = schemathesis.openapi.from_dict(app.openapi())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 190, [f"{o.method} {o.path}" for o in operations]
    loop = asyncio.get_running_loop()
    auth = tenant.headers("admin")
    failures: list[str] = []

    def run(op: Any, mode: GenerationMode, examples: int) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            kw = case.as_transport_kwargs(base_url="http://testserver", headers=auth)
            response = _send(loop, client, kw)
            case.validate_response(
                response, checks=[not_a_server_error, status_code_conformance], transport_kwargs=kw
            )

        try:
            check()
        except Unsatisfiable:
            assert mode is GenerationMode.NEGATIVE  # nothing invalid to send (no parameters)
        except (
            Exception,
            BaseExceptionGroup,
        ) as exc:  # collect every operation's failure, report them together
            failures.append(
                f"{mode.value} {op.method.upper()} {op.path}: {type(exc).__name__}: {exc!r}"[:3000]
            )

    for op in operations:
        await asyncio.to_thread(run, op, GenerationMode.POSITIVE, EXAMPLES)
        await asyncio.to_thread(run, op, GenerationMode.NEGATIVE, max(1, EXAMPLES // 2))
    assert not failures, "\n\n".join(failures)
