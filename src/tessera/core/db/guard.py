"""The tenant chokepoint.

Every ORM statement that touches a :class:`TenantOwned` model, and every Core ``UPDATE`` or
``DELETE`` of a tenant-owned table (bulk writes on hot paths), gets ``tenant_id = <tenant in
scope>`` added here, and every new tenant-owned row gets ``tenant_id`` set here: objects added
to the session when they are flushed, and the rows of a bulk ``INSERT`` given as parameters
(``session.execute(insert(Model), [{...}, ...])``) when it runs. A row naming another tenant is
refused. No other code writes a tenant filter or a row's tenant. A statement against tenant-owned data with no tenant in scope raises
:class:`~tessera.core.context.NoTenantInScope` unless the session was opened explicitly as a
platform session (operator endpoints, job claiming), which is visible in code review.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import BindParameter, Table, bindparam, event
from sqlalchemy.orm import ORMExecuteState, Session, with_loader_criteria

from tessera.core import context
from tessera.core.db.base import TENANT_OWNED_TABLES, TenantOwned

PLATFORM = "platform"


def _touches_tenant_data(state: ORMExecuteState) -> bool:
    return any(issubclass(mapper.class_, TenantOwned) for mapper in state.all_mappers)


def _written_tenant_table(state: ORMExecuteState) -> Table | None:
    """The tenant-owned table an INSERT, UPDATE or DELETE writes, if any."""
    table = getattr(state.statement, "table", None)
    if isinstance(table, Table) and table.name in TENANT_OWNED_TABLES:
        return table
    return None


def _stamped(row: Any, tid: Any) -> Any:
    current = row.get("tenant_id")
    if current is None:
        return {**row, "tenant_id": tid}
    if current != tid:
        raise context.NoTenantInScope("a row to insert belongs to another tenant")
    return row


def _stamp_insert(state: ORMExecuteState, tid: Any) -> None:
    """Give each parameter row of a bulk INSERT into a tenant-owned table the tenant in scope.

    Rows written into the statement itself (``.values(...)``, ``.from_select(...)``) are not
    parameters and are left as they are: on PostgreSQL row-level security refuses another
    tenant's rows (``WITH CHECK``)."""
    stmt: Any = state.statement
    if _written_tenant_table(state) is None or stmt._values or stmt._multi_values or stmt.select is not None:
        return
    if tid is None:
        if state.session.info.get(PLATFORM):
            return
        raise context.NoTenantInScope("insert into tenant-owned data with no tenant in scope")
    params: Any = state.parameters
    if isinstance(params, list):
        state.parameters = [_stamped(p, tid) for p in params]
    elif params:
        state.parameters = _stamped(params, tid)


def _core_tenant_table(state: ORMExecuteState) -> Table | None:
    """The tenant-owned table of a Core (not ORM-entity) UPDATE or DELETE, if any."""
    if not (state.is_update or state.is_delete) or state.all_mappers:
        return None
    return _written_tenant_table(state)


# The tenant criterion names the tenant through a bound parameter, not a literal or a closure
# variable: one option object serves every tenant, so a statement guarded once keeps its cache
# key (SQLAlchemy memoizes it per statement object) and its compiled form for every tenant.
# Building or cache-keying a per-tenant criterion cost more than the rest of a primary-key read.
TENANT_PARAM = "tessera_guard_tenant_id"
_TENANT_BIND: BindParameter[Any] = bindparam(TENANT_PARAM)
_CRITERIA = with_loader_criteria(
    TenantOwned,
    lambda cls: cls.tenant_id == _TENANT_BIND,
    include_aliases=True,
)
# Statements built once (repository constants) are guarded once; statements built per call
# drop out with their last reference.
_guarded: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _with_tenant_param(state: ORMExecuteState, tid: Any) -> None:
    params: Any = state.parameters
    if isinstance(params, list):
        state.parameters = [{**p, TENANT_PARAM: tid} for p in params]
    else:
        state.parameters = {**(params or {}), TENANT_PARAM: tid}


def _guard(statement: Any) -> Any:
    try:
        found = _guarded.get(statement)
    except TypeError:  # not weak-referenceable
        return statement.options(_CRITERIA)
    if found is None:
        found = _guarded[statement] = statement.options(_CRITERIA)
    return found


def guarded(statement: Any) -> Any:
    """``statement`` with the tenant criterion (``tenant_id = :tessera_guard_tenant_id``) on every
    tenant-owned entity, for code that compiles a statement itself (:mod:`.direct`) instead of
    executing it through a session; the caller binds :data:`TENANT_PARAM` to the tenant in scope."""
    return _guard(statement)


def _on_execute(state: ORMExecuteState) -> None:
    if state.is_insert:
        _stamp_insert(state, context.current_tenant_id_or_none())
        return
    if not (state.is_select or state.is_update or state.is_delete):
        return
    tid = context.current_tenant_id_or_none()
    if state.is_column_load or state.is_relationship_load:
        # These loads carry the criterion of the statement that loaded the objects (the option
        # propagates to loaders); its parameter takes the tenant in scope now, else the tenant
        # the transaction began with.
        loader_tid = tid if tid is not None else state.session.info.get("tenant_id")
        if loader_tid is not None:
            _with_tenant_param(state, loader_tid)
        return
    core_table = _core_tenant_table(state)
    if tid is None:
        if state.session.info.get(PLATFORM):
            return
        if core_table is not None or _touches_tenant_data(state):
            raise context.NoTenantInScope("query on tenant-owned data with no tenant in scope")
        return
    if core_table is not None:
        state.statement = state.statement.where(core_table.c.tenant_id == tid)  # type: ignore[attr-defined]
        return
    state.statement = _guard(state.statement)
    _with_tenant_param(state, tid)


def _before_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    tid = context.current_tenant_id_or_none()
    for obj in session.new:
        if isinstance(obj, TenantOwned):
            current = obj.__dict__.get("tenant_id")
            if current is None:
                if tid is None:
                    raise context.NoTenantInScope(f"new {type(obj).__name__} with no tenant in scope")
                obj.tenant_id = tid
            elif tid is not None and current != tid:
                raise context.NoTenantInScope(f"{type(obj).__name__} belongs to another tenant")
    if tid is not None:
        for obj in session.dirty:
            if isinstance(obj, TenantOwned) and obj.tenant_id != tid:
                raise context.NoTenantInScope(f"{type(obj).__name__} belongs to another tenant")


_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    event.listen(Session, "do_orm_execute", _on_execute)
    event.listen(Session, "before_flush", _before_flush)
    _installed = True
