"""Tag management: tag groups and tags (create, rename, delete), member counts by source, and
for rule-driven tags the segments whose rules use them."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import Response

from tessera.console.components import Form, _l, apply_error, form_data, refill, schema_form, validate_form
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, add_template_dir, console_router, page
from tessera.contacts.schemas import TagCreate, TagGroupCreate, TagUpdate
from tessera.contacts.service import console_queries as q
from tessera.contacts.service import stewardship
from tessera.contacts.service import tags as tags_svc
from tessera.core.http.errors import TesseraError

add_template_dir(Path(__file__).resolve().parents[1] / "templates")

router = console_router("/contacts/tags")
Read = Annotated[Page, Depends(page("contacts:read"))]
Write = Annotated[Page, Depends(page("contacts:write"))]
BASE = f"{PREFIX}/contacts/tags"

register_nav(NavItem("contacts.tags", "Tags", BASE, "contacts:read", module="contacts", order=7))

SOURCE_LABELS = {
    "manual": _l("Manual"),
    "api": _l("API"),
    "import": _l("Import"),
    "rule": _l("Rule"),
    "model": _l("Model"),
}


def group_form(values: dict[str, Any] | None = None) -> Form:
    return schema_form(
        TagGroupCreate,
        values,
        labels={"key": _("Key"), "name": _("Name")},
        help={"key": _("Lower-case letters, digits and underscores, starting with a letter.")},
    )


def tag_form(
    groups: list[tuple[str, str]], segments: list[tuple[str, str]], values: dict[str, Any] | None = None
) -> Form:
    return schema_form(
        TagCreate,
        values,
        labels={"name": _("Name"), "group_id": _("Group"), "segment_id": _("Follows segment")},
        options={"group_id": groups, "segment_id": segments},
        help={
            "segment_id": _(
                "Optional. Contacts in this dynamic segment get the tag, and lose it when they leave, "
                "at every refresh."
            )
        },
    )


async def _page(
    pg: Page, *, gform: Form | None = None, tform: Form | None = None, status: int = 200
) -> Response:
    groups = await stewardship.groups(pg.session)
    options = [(str(g.id), g.name) for g in groups]
    overview = await q.tag_overview(pg.session)
    segments = await q.dynamic_segment_options(pg.session)
    return pg.render(
        "contacts/tags.html",
        status_code=status,
        groups=overview,
        gform=gform or group_form(),
        tform=tform or tag_form(options, segments),
        segment_options=segments,
        write=pg.can("contacts:write"),
        source_labels={k: str(v) for k, v in SOURCE_LABELS.items()},
        seed_names={g.id: _(g.name) for g in groups},
    )


@router.get("")
async def tags_page(pg: Read) -> Response:
    return await _page(pg)


@router.post("")
async def create_tag(pg: Write, request: Request) -> Response:
    groups = await stewardship.groups(pg.session)
    data = form_data(await request.form(), TagCreate)
    form = tag_form([(str(g.id), g.name) for g in groups], await q.dynamic_segment_options(pg.session))
    body = validate_form(TagCreate, data, form)
    if isinstance(body, TagCreate):
        try:
            async with pg.session.begin_nested():
                tag = await tags_svc.create_tag(pg.session, body)
            return pg.redirect(BASE, toast=_("Tag “%(name)s” created.") % {"name": tag.name})
        except TesseraError as exc:
            apply_error(form, exc)
    return await _page(pg, tform=refill(form, data), status=422)


@router.post("/groups")
async def create_group(pg: Write, request: Request) -> Response:
    data = form_data(await request.form(), TagGroupCreate)
    form = group_form()
    body = validate_form(TagGroupCreate, data, form)
    if isinstance(body, TagGroupCreate):
        try:
            async with pg.session.begin_nested():
                group = await tags_svc.create_group(pg.session, body)
            return pg.redirect(BASE, toast=_("Group “%(name)s” created.") % {"name": group.name})
        except TesseraError as exc:
            apply_error(form, exc)
    return await _page(pg, gform=refill(form, data), status=422)


@router.post("/{tag_id:uuid}/rename")
async def rename_tag(tag_id: uuid.UUID, pg: Write, request: Request) -> Response:
    raw = await request.form()
    tag = await stewardship.rename_tag(pg.session, tag_id, str(raw.get("name") or ""))
    return pg.redirect(BASE, toast=_("Tag renamed to “%(name)s”.") % {"name": tag.name})


@router.post("/{tag_id:uuid}/segment")
async def tag_segment(tag_id: uuid.UUID, pg: Write, request: Request) -> Response:
    """Make a tag follow a dynamic segment (a rule tag), or turn it back into a manual tag."""
    raw = await request.form()
    value = str(raw.get("segment_id") or "")
    try:
        segment_id = uuid.UUID(value) if value else None
    except ValueError:
        segment_id = uuid.uuid4()  # unknown: the service answers segment_id not found
    tag = await tags_svc.update_tag(pg.session, tag_id, TagUpdate(segment_id=segment_id))
    msg = (
        _("Tag “%(name)s” now follows its segment.") if tag.segment_id else _("Tag “%(name)s” is now manual.")
    )
    return pg.redirect(BASE, toast=msg % {"name": tag.name})


@router.post("/{tag_id:uuid}/delete")
async def delete_tag(tag_id: uuid.UUID, pg: Write) -> Response:
    await stewardship.delete_tag(pg.session, tag_id)
    return pg.redirect(BASE, toast=_("Tag deleted."))


@router.post("/groups/{group_id:uuid}/rename")
async def rename_group(group_id: uuid.UUID, pg: Write, request: Request) -> Response:
    raw = await request.form()
    group = await stewardship.rename_group(pg.session, group_id, str(raw.get("name") or ""))
    return pg.redirect(BASE, toast=_("Group renamed to “%(name)s”.") % {"name": group.name})


@router.post("/groups/{group_id:uuid}/delete")
async def delete_group(group_id: uuid.UUID, pg: Write) -> Response:
    n = await stewardship.delete_group(pg.session, group_id)
    return pg.redirect(BASE, toast=_("Group deleted with its %(n)s tags.") % {"n": n})
