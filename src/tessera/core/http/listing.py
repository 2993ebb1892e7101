"""List conventions shared by every list endpoint and console list page.

``?limit=&cursor=&sort=-created_at&<field>=<value>&<field>__in=a,b&<field>__gte=…``.
One :class:`FilterSet` declares which fields can be filtered and sorted; the API and the
console both derive their parameters from it. Pagination is by opaque keyset cursor over
(sort value, id), so pages are stable under inserts and cost the same at any depth.
"""

from __future__ import annotations

import base64
import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import orjson
from pydantic import BaseModel
from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from tessera.core.http.errors import InvalidInput

T = TypeVar("T")

OPERATORS = ("eq", "in", "gte", "lte", "contains")
MAX_LIMIT = 200


@dataclass(frozen=True)
class FilterField:
    column: InstrumentedAttribute[Any]
    kind: type = str
    operators: tuple[str, ...] = ("eq", "in")
    label: str = ""
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class FilterSet:
    fields: Mapping[str, FilterField]
    sortable: Mapping[str, InstrumentedAttribute[Any]]
    default_sort: str = "-created_at"
    id_column: InstrumentedAttribute[Any] | None = None


@dataclass
class ListQuery:
    limit: int = 50
    cursor: str | None = None
    sort: str | None = None
    filters: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_params(cls, params: Mapping[str, str], filterset: FilterSet) -> ListQuery:
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            raise InvalidInput("limit must be an integer", field="limit") from None
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
        sort = params.get("sort") or filterset.default_sort
        if sort.lstrip("-") not in filterset.sortable:
            allowed = ", ".join(sorted(filterset.sortable))
            raise InvalidInput(f"sort must be one of: {allowed}", field="sort")
        filters: dict[str, str] = {}
        for key, value in params.items():
            if key in ("limit", "cursor", "sort"):
                continue
            name, _, op = key.partition("__")
            op = op or "eq"
            if name in filterset.fields:
                f = filterset.fields[name]
                if op not in f.operators:
                    raise InvalidInput(
                        f"operator '{op}' is not allowed on {name}; allowed: {', '.join(f.operators)}",
                        field=key,
                    )
                filters[key] = value
        return cls(limit=limit, cursor=params.get("cursor") or None, sort=sort, filters=filters)


class Page(BaseModel, Generic[T]):
    """A page of results; pass ``next_cursor`` back as ``cursor`` for the next page."""

    items: list[T]
    next_cursor: str | None = None


def _coerce(value: str, kind: type, key: str) -> Any:
    try:
        if kind is bool:
            if value.lower() in ("true", "1", "yes"):
                return True
            if value.lower() in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if kind is uuid.UUID:
            return uuid.UUID(value)
        if kind is dt.datetime:
            parsed = dt.datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
        if kind is int:
            return int(value)
        return value
    except ValueError:
        raise InvalidInput(f"'{value}' is not a valid {kind.__name__}", field=key) from None


def _encode_cursor(values: Sequence[Any]) -> str:
    def enc(v: Any) -> Any:
        if isinstance(v, dt.datetime):
            return {"t": v.isoformat()}
        if isinstance(v, uuid.UUID):
            return {"u": str(v)}
        return v

    return base64.urlsafe_b64encode(orjson.dumps([enc(v) for v in values])).decode().rstrip("=")


def _decode_cursor(cursor: str) -> list[Any]:
    def dec(v: Any) -> Any:
        if isinstance(v, dict) and "t" in v:
            return dt.datetime.fromisoformat(v["t"])
        if isinstance(v, dict) and "u" in v:
            return uuid.UUID(v["u"])
        return v

    try:
        raw = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(raw, list) or len(raw) != 2:
            raise ValueError
        return [dec(v) for v in raw]
    except ValueError:
        raise InvalidInput("cursor is not valid", field="cursor") from None


def apply_listing(stmt: Select[Any], query: ListQuery, filterset: FilterSet) -> Select[Any]:
    """Add filters, keyset cursor, ordering and limit (+1 to detect a next page)."""
    for key, raw in query.filters.items():
        name, _, op = key.partition("__")
        f = filterset.fields[name]
        col = f.column
        if op in ("", "eq"):
            stmt = stmt.where(col == _coerce(raw, f.kind, key))
        elif op == "in":
            stmt = stmt.where(col.in_([_coerce(v, f.kind, key) for v in raw.split(",") if v]))
        elif op == "gte":
            stmt = stmt.where(col >= _coerce(raw, f.kind, key))
        elif op == "lte":
            stmt = stmt.where(col <= _coerce(raw, f.kind, key))
        elif op == "contains":
            escaped = raw.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(col.ilike(f"%{escaped}%", escape="\\"))
    sort = query.sort or filterset.default_sort
    desc = sort.startswith("-")
    sort_col = filterset.sortable[sort.lstrip("-")]
    id_col = filterset.id_column
    assert id_col is not None, "FilterSet.id_column is required"
    if query.cursor:
        value, last_id = _decode_cursor(query.cursor)
        if desc:
            stmt = stmt.where(or_(sort_col < value, and_(sort_col == value, id_col < last_id)))
        else:
            stmt = stmt.where(or_(sort_col > value, and_(sort_col == value, id_col > last_id)))
    order = (sort_col.desc(), id_col.desc()) if desc else (sort_col.asc(), id_col.asc())
    return stmt.order_by(*order).limit(query.limit + 1)


def page_of(rows: Sequence[Any], query: ListQuery, filterset: FilterSet) -> tuple[list[Any], str | None]:
    """Trim the extra row fetched by :func:`apply_listing` and compute the next cursor."""
    items = list(rows[: query.limit])
    if len(rows) <= query.limit or not items:
        return items, None
    last = items[-1]
    sort_name = (query.sort or filterset.default_sort).lstrip("-")
    sort_attr = filterset.sortable[sort_name].key
    return items, _encode_cursor([getattr(last, sort_attr), last.id])
