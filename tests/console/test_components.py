"""Components other contexts build on: forms from schemas, charts, tree, kanban, registries."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field
from starlette.datastructures import FormData

from tessera.console import i18n, registry
from tessera.console.components import (
    Chart,
    Kanban,
    KanbanColumn,
    apply_error,
    build_tree,
    form_data,
    schema_form,
    validate_form,
)
from tessera.console.web import env
from tessera.core.access.principal import Principal
from tessera.core.context import Actor
from tessera.core.http.errors import Conflict, InvalidInput


class Thing(BaseModel):
    name: str = Field(min_length=2, max_length=20)
    kind: Literal["a", "b"] = "a"
    email: str | None = None
    active: bool = False
    tags: list[str] = Field(default_factory=list)


def test_schema_form_derives_fields() -> None:
    form = schema_form(Thing, {"name": "x"}, labels={"name": "Label"})
    by = {f.name: f for f in form.fields}
    assert by["name"].label == "Label" and by["name"].required and by["name"].maxlength == 20
    assert by["kind"].kind == "select" and [v for v, _ in by["kind"].options] == ["a", "b"]
    assert by["kind"].value == "a"
    assert by["email"].kind == "email" and not by["email"].required
    assert by["active"].kind == "checkbox"


def test_form_validation_puts_errors_on_fields() -> None:
    form = schema_form(Thing)
    data = form_data(
        FormData([("name", "x"), ("kind", "c"), ("active", "on"), ("tags", "t1"), ("tags", "t2")]), Thing
    )
    assert data["active"] is True and data["tags"] == ["t1", "t2"]
    assert validate_form(Thing, data, form) is None
    by = {f.name: f for f in form.fields}
    assert by["name"].error == "This is too short."
    assert by["kind"].error == "Choose a value from the list."
    html = env.get_template("console/components/form.html").module.fields(form)  # type: ignore[attr-defined]
    assert 'aria-invalid="true" aria-describedby="f-name-err"' in str(html)


def test_service_errors_map_to_field_or_banner() -> None:
    form = schema_form(Thing)
    apply_error(form, Conflict("name taken", field="name"))
    assert form.fields[0].error == "name taken" and form.message is None
    form2 = schema_form(Thing)
    apply_error(form2, InvalidInput("quota exceeded"))
    assert form2.message == "quota exceeded"


def test_chart_config_cannot_break_out_of_its_script_tag() -> None:
    c = Chart("x", "T", "bar", ["</script><script>alert(1)</script>"], [{"data": [1]}])
    html = str(env.get_template("console/components/widgets.html").module.chart(c))  # type: ignore[attr-defined]
    assert html.count("</script>") == 1
    assert '<script type="application/json" id="chart-x">' in html and "\\u003c/script>" in html


def test_tree_and_kanban_render() -> None:
    @dataclass
    class Row:
        id: uuid.UUID
        parent_id: uuid.UUID | None
        name: str

    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    roots = build_tree([Row(c, b, "C"), Row(a, None, "A"), Row(b, a, "B")])
    assert [n.label for n in roots] == ["A"] and roots[0].children[0].children[0].label == "C"
    board = Kanban(
        "deals",
        [KanbanColumn("new", "New", [{"id": "1", "title": "Deal 1"}]), KanbanColumn("won", "Won", [])],
        "/console/sales/move",
    )
    html = str(env.get_template("console/components/widgets.html").module.kanban(board, None))  # type: ignore[attr-defined]
    assert 'data-move-url="/console/sales/move"' in html and 'data-card="1"' in html
    assert html.count('class="kanban-col"') == 2


def test_dates_and_numbers_follow_locale_and_time_zone() -> None:
    when = dt.datetime(2026, 1, 2, 20, 30, tzinfo=dt.UTC)
    i18n.activate("zh_Hans", "Asia/Shanghai")
    try:
        assert i18n.format_datetime(when, "short").startswith("2026/1/3")
        assert i18n.gettext("Users") == "用户"
    finally:
        i18n.activate("en", "UTC")
    assert i18n.format_number(1234567) == "1,234,567"
    assert i18n.format_datetime(when, "short").startswith("1/2/26")


def _principal(*perms: str) -> Principal:
    return Principal(
        tenant_id=uuid.uuid4(),
        actor=Actor("user", uuid.uuid4(), "x"),
        role_key="r",
        permissions=frozenset(perms),
    )


async def test_nav_follows_permissions_and_entitled_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    item = registry.register_nav(
        registry.NavItem("test.crm", "CRM", "/console/crm", "contacts:read", module="crm", order=5)
    )
    try:
        import tessera.core.subscription.service as sub

        @dataclass
        class Ent:
            modules: frozenset[str]

        async def ent_with(mods: frozenset[str]) -> Any:
            async def fake(session: Any, now: Any = None) -> Ent:
                return Ent(mods)

            return fake

        monkeypatch.setattr(sub, "effective_entitlements", await ent_with(frozenset({"crm"})))
        keys = [n.key for n in await registry.visible_nav(None, _principal("contacts:read"))]  # type: ignore[arg-type]
        assert "test.crm" in keys and "admin.roles" not in keys
        monkeypatch.setattr(sub, "effective_entitlements", await ent_with(frozenset()))
        keys = [n.key for n in await registry.visible_nav(None, _principal("contacts:read"))]  # type: ignore[arg-type]
        assert "test.crm" not in keys
    finally:
        registry.NAV.remove(item)


def test_registries_are_idempotent() -> None:
    async def provider(session: Any, principal: Any, q: str) -> list[registry.SearchHit]:
        return []

    async def tile(session: Any, principal: Any) -> registry.Tile | None:
        return None

    for _ in range(2):
        registry.register_search(provider)
        registry.register_tile(tile)
    assert registry.SEARCH.count(provider) == 1 and registry.TILES.count(tile) == 1
    registry.SEARCH.remove(provider)
    registry.TILES.remove(tile)


def test_every_msgid_is_translated() -> None:
    from babel.messages.pofile import read_po

    path = i18n.DIR / "zh_Hans" / "LC_MESSAGES" / "messages.po"
    cat = read_po(path.open("rb"))
    untranslated = [m.id for m in cat if m.id and not m.string]
    assert untranslated == []
    pot = read_po((i18n.DIR / "messages.pot").open("rb"))
    assert {m.id for m in pot if m.id} <= {m.id for m in cat if m.id}


def test_contexts_can_add_template_dirs(tmp_path: object) -> None:
    from pathlib import Path

    from tessera.console.web import add_template_dir

    d = Path(str(tmp_path)) / "templates"
    (d / "demo").mkdir(parents=True)
    (d / "demo" / "x.html").write_text(
        '{% from "console/components/widgets.html" import empty %}{{ empty("demo") }}'
    )
    add_template_dir(d)
    add_template_dir(d)
    assert '<p class="empty-title">demo</p>' in env.get_template("demo/x.html").render()
