"""Reusable console components: list pages, forms from Pydantic schemas, detail pages, kanban,
charts, stat tiles, timelines and trees. Python builds the data; the macros in
``templates/console/components/`` render it, so contexts never copy markup.

A list page in another context::

    USERS = ListPage(key="admin.users", title=_l("Users"), filterset=USER_FILTERS,
                     columns=[Column("name", _l("Name"), sortable=True, link=True), …],
                     row_href=lambda u: f"/console/admin/users/{u.id}")

    @router.get("/users")
    async def users(pg: Annotated[Page, Depends(page("users:read"))]):
        result = await USERS.run(pg, select(User))
        return USERS.respond(pg, result)          # HTML, htmx partial or CSV
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import types
import typing
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from markupsafe import Markup
from pydantic import BaseModel, ValidationError
from sqlalchemy import Select, or_, select
from starlette.datastructures import FormData
from starlette.responses import Response, StreamingResponse

from tessera.console import i18n
from tessera.console.models import SavedView
from tessera.console.web import Page
from tessera.core.http.errors import TesseraError
from tessera.core.http.listing import FilterSet, ListQuery, apply_listing, page_of

RESERVED_PARAMS = ("toast", "format", "view", "_")
EXPORT_MAX_ROWS = 50_000


class LazyText(str):
    """An English msgid translated at render time (labels declared at import time)."""

    def __str__(self) -> str:
        return i18n.gettext(str.__str__(self))

    def __html__(self) -> str:
        return str(Markup.escape(str(self)))


def _l(msgid: str) -> LazyText:
    return LazyText(msgid)


# --- list page ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    sortable: bool = False
    link: bool = False  # the cell links to the row's detail page
    value: Callable[[Any], Any] | None = None  # default: getattr(row, key)
    kind: str = "text"  # text | datetime | number | badge | mono
    hide_on_phone: bool = False

    def cell(self, row: Any) -> Any:
        v = self.value(row) if self.value else getattr(row, self.key, None)
        if self.kind == "datetime" and isinstance(v, dt.datetime):
            return i18n.format_datetime(v, "short")
        if self.kind == "number" and isinstance(v, int | float):
            return i18n.format_number(v)
        return "—" if v is None or v == "" else v


@dataclass(frozen=True)
class BulkAction:
    name: str
    label: str
    url: str  # receives POST with ids=<id>&ids=<id>…
    confirm: str | None = None
    danger: bool = False


@dataclass(frozen=True)
class FilterControl:
    param: str  # query parameter, e.g. "status" or "email__contains"
    label: str
    kind: str = "text"  # text | select | date
    options: Sequence[tuple[str, str]] = ()
    value: str = ""


@dataclass
class ListResult:
    rows: list[Any]
    next_cursor: str | None
    query: ListQuery
    params: dict[str, str]
    filters: list[FilterControl]
    saved_views: list[SavedView]


@dataclass
class ListPage:
    key: str
    title: str
    filterset: FilterSet
    columns: list[Column]
    row_href: Callable[[Any], str] | None = None
    bulk_actions: list[BulkAction] = field(default_factory=list)
    export: bool = True
    options: Mapping[str, Sequence[tuple[str, str]]] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)  # filter labels by field name
    empty_text: str = _l("Nothing here yet.")
    search_param: str | None = None  # a "contains" filter shown as the list's search box
    actions: list[tuple[str, str]] = field(default_factory=list)  # header buttons (label, href)

    def controls(self, params: Mapping[str, str]) -> list[FilterControl]:
        out = []
        for name, f in self.filterset.fields.items():
            label = self.labels.get(name) or f.label or name.replace("_", " ").capitalize()
            if f.choices or name in self.options:
                opts = list(self.options.get(name) or [(c, c) for c in f.choices])
                out.append(FilterControl(name, label, "select", opts, params.get(name, "")))
            elif "contains" in f.operators:
                p = f"{name}__contains"
                if p != self.search_param:
                    out.append(FilterControl(p, label, "text", (), params.get(p, "")))
            elif "eq" in f.operators and f.kind in (str, uuid.UUID):
                out.append(FilterControl(name, label, "text", (), params.get(name, "")))
            elif f.kind is dt.datetime and "gte" in f.operators:
                out.append(
                    FilterControl(f"{name}__gte", label + " ≥", "date", (), params.get(f"{name}__gte", ""))
                )
                out.append(
                    FilterControl(f"{name}__lte", label + " ≤", "date", (), params.get(f"{name}__lte", ""))
                )
        return out

    async def run(self, pg: Page, stmt: Select[Any], *, limit: int | None = None) -> ListResult:
        raw = {k: v for k, v in pg.request.query_params.items() if k not in RESERVED_PARAMS and v != ""}
        params = dict(raw)
        q = ListQuery.from_params(params, self.filterset)
        if limit:
            q.limit = limit
        rows = list((await pg.session.execute(apply_listing(stmt, q, self.filterset))).scalars().all())
        items, cursor = page_of(rows, q, self.filterset)
        views: list[SavedView] = []
        if pg.principal and pg.principal.user_id:
            views = list(
                (
                    await pg.session.execute(
                        select(SavedView)
                        .where(
                            SavedView.page == self.key,
                            or_(SavedView.user_id == pg.principal.user_id, SavedView.shared),
                        )
                        .order_by(SavedView.name)
                    )
                ).scalars()
            )
        return ListResult(items, cursor, q, params, self.controls(params), views)

    def respond(
        self,
        pg: Page,
        result: ListResult,
        template: str = "console/list.html",
        stmt: Select[Any] | None = None,
        **ctx: Any,
    ) -> Response:
        if pg.request.query_params.get("format") == "csv" and self.export:
            return self.csv(result)
        tpl = (
            "console/components/list_rows.html"
            if pg.partial and pg.request.headers.get("hx-target") == f"list-{self.key.replace('.', '-')}"
            else template
        )
        return pg.render(tpl, lst=self, result=result, **ctx)

    def csv(self, result: ListResult) -> Response:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([str(c.label) for c in self.columns])
        for row in result.rows:
            w.writerow([str(c.cell(row)) for c in self.columns])
        name = self.key.replace(".", "-")
        return StreamingResponse(
            iter([buf.getvalue()]),
            media_type="text/csv",
            headers={"content-disposition": f'attachment; filename="{name}.csv"'},
        )

    def sort_link(self, result: ListResult, column: Column) -> tuple[str, str]:
        """(query string for clicking this column header, current direction "asc"/"desc"/"")."""
        current = result.query.sort or self.filterset.default_sort
        desc = current.startswith("-")
        active = current.lstrip("-") == column.key
        nxt = column.key if (active and desc) or not active else f"-{column.key}"
        params = {k: v for k, v in result.params.items() if k not in ("cursor", "sort")}
        params["sort"] = nxt
        return _qs(params), ("desc" if desc else "asc") if active else ""

    def page_link(self, result: ListResult) -> str | None:
        if not result.next_cursor:
            return None
        params = {k: v for k, v in result.params.items() if k != "cursor"}
        params["cursor"] = result.next_cursor
        return _qs(params)

    def export_link(self, result: ListResult) -> str:
        params = {k: v for k, v in result.params.items() if k not in ("cursor", "limit")}
        params["format"] = "csv"
        params["limit"] = "200"
        return _qs(params)

    def current_query(self, result: ListResult) -> str:
        return _qs({k: v for k, v in result.params.items() if k != "cursor"})


def _qs(params: Mapping[str, str]) -> str:
    import urllib.parse

    return "?" + urllib.parse.urlencode(params)


async def export_all(pg: Page, lst: ListPage, stmt: Select[Any]) -> Response:
    """CSV of every row matching the page's filters (keyset pages of 200, capped)."""
    params = {
        k: v
        for k, v in pg.request.query_params.items()
        if k not in RESERVED_PARAMS and k not in ("cursor", "limit") and v != ""
    }
    q = ListQuery.from_params(params, lst.filterset)
    q.limit = 200
    rows: list[Any] = []
    while len(rows) < EXPORT_MAX_ROWS:
        batch = list((await pg.session.execute(apply_listing(stmt, q, lst.filterset))).scalars().all())
        items, cursor = page_of(batch, q, lst.filterset)
        rows.extend(items)
        if cursor is None:
            break
        q.cursor = cursor
    return lst.csv(ListResult(rows, None, q, params, [], []))


# --- forms ----------------------------------------------------------------------------------


@dataclass
class FormField:
    name: str
    label: str
    kind: str = "text"  # text | email | password | number | select | checkbox | textarea | date
    value: Any = ""
    required: bool = False
    options: Sequence[tuple[str, str]] = ()
    error: str | None = None
    help: str = ""
    maxlength: int | None = None
    minlength: int | None = None


@dataclass
class Form:
    fields: list[FormField]
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None  # an error not tied to one field

    @property
    def ok(self) -> bool:
        return not self.errors and not self.message


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, optional) of ``X | None``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), True
    return annotation, False


def _kind(name: str, annotation: Any) -> tuple[str, Sequence[tuple[str, str]]]:
    inner, _ = _unwrap(annotation)
    if typing.get_origin(inner) is typing.Literal:
        return "select", [(str(v), str(v)) for v in typing.get_args(inner)]
    if inner is bool:
        return "checkbox", ()
    if inner in (int, float):
        return "number", ()
    if inner is dt.datetime or inner is dt.date:
        return "date", ()
    if "password" in name:
        return "password", ()
    if "email" in name:
        return "email", ()
    return "text", ()


def schema_form(
    schema: type[BaseModel],
    values: Mapping[str, Any] | None = None,
    *,
    labels: Mapping[str, str] | None = None,
    options: Mapping[str, Sequence[tuple[str, str]]] | None = None,
    only: Sequence[str] | None = None,
    help: Mapping[str, str] | None = None,
    kinds: Mapping[str, str] | None = None,
) -> Form:
    """Form fields derived from the same Pydantic schema the API validates with."""
    values = values or {}
    out = []
    for name, info in schema.model_fields.items():
        if only is not None and name not in only:
            continue
        kind, opts = _kind(name, info.annotation)
        if options and name in options:
            kind, opts = "select", options[name]
        if kinds and name in kinds:
            kind = kinds[name]
        maxlength = minlength = None
        for m in info.metadata:
            maxlength = getattr(m, "max_length", None) or maxlength
            minlength = getattr(m, "min_length", None) or minlength
        label = (labels or {}).get(name) or name.replace("_", " ").capitalize()
        value = values.get(name, "" if info.is_required() or info.default is None else info.default)
        out.append(
            FormField(
                name=name,
                label=label,
                kind=kind,
                value="" if value is None else value,
                required=info.is_required(),
                options=opts,
                help=(help or {}).get(name, ""),
                maxlength=maxlength if kind not in ("select", "checkbox") else None,
                minlength=minlength if kind not in ("select", "checkbox") else None,
            )
        )
    if only is not None:
        order = {n: i for i, n in enumerate(only)}
        out.sort(key=lambda f: order[f.name])
    return Form(out)


def form_data(
    form: FormData, schema: type[BaseModel], *, only: Sequence[str] | None = None
) -> dict[str, Any]:
    """Form values as schema input: empty strings of optional fields become absent."""
    data: dict[str, Any] = {}
    for name, info in schema.model_fields.items():
        if only is not None and name not in only:
            continue
        kind, _ = _kind(name, info.annotation)
        if kind == "checkbox":
            data[name] = form.get(name) in ("on", "true", "1")
            continue
        inner, _opt = _unwrap(info.annotation)
        if typing.get_origin(inner) is list:
            data[name] = [v for v in form.getlist(name) if isinstance(v, str) and v]
            continue
        raw = form.get(name)
        if raw is None or raw == "":
            continue
        data[name] = raw
    return data


def validate_form(schema: type[BaseModel], data: Mapping[str, Any], form: Form) -> BaseModel | None:
    """Validate; on failure put each error on its field (the rule, in the user's language)."""
    try:
        return schema.model_validate(dict(data))
    except ValidationError as exc:
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ())]
            name = loc[0] if loc else ""
            form.errors.setdefault(name, _rule_message(e))
        _attach(form)
        return None


def _rule_message(e: Mapping[str, Any]) -> str:
    rules = {
        "missing": i18n.gettext("This field is required."),
        "string_too_short": i18n.gettext("This is too short."),
        "string_too_long": i18n.gettext("This is too long."),
        "string_pattern_mismatch": i18n.gettext("This does not have the expected format."),
        "uuid_parsing": i18n.gettext("Choose a value from the list."),
        "literal_error": i18n.gettext("Choose a value from the list."),
        "extra_forbidden": i18n.gettext("This field is not accepted."),
    }
    if e.get("type") == "value_error" and "email" in str(e.get("msg", "")).lower():
        return i18n.gettext("Enter a valid email address.")
    return rules.get(str(e.get("type")), i18n.gettext("This value is not valid."))


def apply_error(form: Form, exc: TesseraError) -> Form:
    """Map a service error onto the form: on its field when it names one, else as a banner."""
    names = {f.name for f in form.fields}
    if exc.field and exc.field in names:
        form.errors[exc.field] = i18n.gettext(exc.message)
    else:
        form.message = i18n.gettext(exc.message)
    _attach(form)
    return form


def _attach(form: Form) -> None:
    for f in form.fields:
        f.error = form.errors.get(f.name)
    unknown = [k for k in form.errors if k not in {f.name for f in form.fields}]
    if unknown and not form.message:
        form.message = "; ".join(f"{k}: {form.errors[k]}" for k in unknown)


def refill(form: Form, data: Mapping[str, Any]) -> Form:
    for f in form.fields:
        if f.name in data and f.kind != "password":
            f.value = data[f.name]
    return form


# --- detail, kanban, charts, tiles, timeline, tree ------------------------------------------


@dataclass(frozen=True)
class Action:
    label: str
    url: str
    method: str = "get"  # "get" is a link; "post" is a form button carrying the CSRF token
    confirm: str | None = None
    danger: bool = False
    primary: bool = False


@dataclass(frozen=True)
class Tab:
    key: str
    label: str
    href: str
    count: int | None = None


@dataclass
class KanbanColumn:
    key: str
    label: str
    cards: list[dict[str, Any]]  # {"id", "title", "subtitle", "href"}


@dataclass
class Kanban:
    """Drag a card to a column: ``console.js`` posts ``card=<id>&column=<key>`` to ``move_url``."""

    key: str
    columns: list[KanbanColumn]
    move_url: str


@dataclass
class Chart:
    """A Chart.js chart; the config travels as a JSON script tag, never as inline JavaScript."""

    key: str
    title: str
    kind: str
    labels: list[str]
    datasets: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)

    def config_json(self) -> Markup:
        cfg = {
            "type": self.kind,
            "data": {"labels": self.labels, "datasets": self.datasets},
            "options": {"responsive": True, "maintainAspectRatio": False, **self.options},
        }
        # Escape "<" so that the JSON can never close its <script> element.
        return Markup(orjson.dumps(cfg).decode().replace("<", "\\u003c"))  # noqa: S704 - escaped JSON


@dataclass
class TimelineEntry:
    at: dt.datetime
    title: str
    actor: str = ""
    detail: str = ""
    href: str | None = None


@dataclass
class TreeNode:
    id: uuid.UUID
    label: str
    href: str | None = None
    meta: str = ""
    children: list[TreeNode] = field(default_factory=list)


def build_tree(
    rows: Sequence[Any],
    *,
    label: Callable[[Any], str] = lambda r: r.name,
    href: Callable[[Any], str | None] = lambda r: None,
    meta: Callable[[Any], str] = lambda r: "",
) -> list[TreeNode]:
    """Nest rows that have ``id`` and ``parent_id`` (parents may come in any order)."""
    nodes = {r.id: TreeNode(r.id, label(r), href(r), meta(r)) for r in rows}
    roots: list[TreeNode] = []
    for r in rows:
        parent = nodes.get(r.parent_id) if getattr(r, "parent_id", None) else None
        (parent.children if parent else roots).append(nodes[r.id])
    return roots
