"""The gateway's batch statements are built once and reused with new parameters.

A statement tree built per call is cache-keyed again on every execution and, once run, is
garbage in reference cycles (its columns and their collections point at each other), with the
batch's bound values inside, which only the cyclic garbage collector frees. Under bulk load the
gateway's collections of that garbage were its longest pauses (60 ms of CPU, 120-190 ms of
wall time, each holding up every verification code in flight), so these tests count it."""

from __future__ import annotations

import gc
import uuid
from typing import Any

from sqlalchemy import func, select
from tests.conftest import TenantWorld


def _keys(tenant_id: uuid.UUID, link: uuid.UUID, start: int, n: int = 40) -> list[dict[str, Any]]:
    return [
        {
            "link_id": link,
            "carrier_id": f"c{start + i}",
            "tenant_id": tenant_id,
            "message_id": uuid.uuid4(),
            "part": 0,
            "parts": 1,
            "outcome": None,
        }
        for i in range(n)
    ]


async def test_insert_rows_reuses_its_statement_and_leaves_no_cyclic_garbage(tenant: TenantWorld) -> None:
    from tessera.connect import repository
    from tessera.connect.models import CarrierReceiptKey
    from tessera.core import context
    from tessera.core.db.base import table_of
    from tessera.core.db.session import unit_of_work

    table = table_of(CarrierReceiptKey)
    link = uuid.uuid4()
    with context.tenant_scope(tenant.tenant_id):
        async with unit_of_work() as s:
            await repository.insert_rows(s, table, _keys(tenant.tenant_id, link, 0))  # first: built
            built = dict(repository._INSERT_ROWS)
            gc.collect()
            gc.disable()
            try:
                for k in range(1, 11):
                    await repository.insert_rows(s, table, _keys(tenant.tenant_id, link, 1000 * k))
                found = gc.collect()
            finally:
                gc.enable()
            assert repository._INSERT_ROWS == built  # nothing built again
            n = (await s.execute(select(func.count()).select_from(CarrierReceiptKey))).scalar_one()
    assert n == 11 * 40
    assert found < 100  # a statement built per batch left about 60 objects each, values aside


def test_the_gc_trace_gives_the_longest_pause_with_its_own_cpu_time() -> None:
    from tessera.connect.dispatcher import _gc_summary

    # (generation, seconds, CPU seconds, collected): the longest pause is not the most CPU
    got = _gc_summary([(0, 0.010, 0.009, 5), (0, 0.050, 0.004, 7), (2, 0.002, 0.002, 1)])
    assert got["gen0"] == {"n": 2, "max_ms": 50.0, "total_ms": 60.0, "cpu_max_ms": 4.0, "collected": 12}
    assert got["gen1"] == {"n": 0, "max_ms": 0.0, "total_ms": 0.0, "cpu_max_ms": 0.0, "collected": 0}
    assert got["gen2"]["n"] == 1
