"""Templates: variables, per-channel bodies and the approval flow draft → pending → approved/rejected."""

from __future__ import annotations

import re
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.connect.errors import MessageInvalid, TemplateNotFound, TemplateStateConflict
from tessera.connect.models import Template
from tessera.connect.schemas import TemplateIn, TemplatePatch
from tessera.core.audit import service as audit

VARIABLE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def variables_of(*bodies: str) -> list[str]:
    seen: dict[str, None] = {}
    for body in bodies:
        for name in VARIABLE.findall(body):
            seen.setdefault(name, None)
    return list(seen)


def render(body: str, variables: dict[str, str], *, field: str = "variables") -> str:
    """Fill ``{{name}}`` placeholders; every placeholder needs a value and every value a placeholder."""
    wanted = set(VARIABLE.findall(body))
    for name in variables:
        if name not in wanted:
            raise MessageInvalid(
                f"variable '{name}' is not used by the message",
                field=f"{field}.{name}",
                rule="unknown_variable",
            )
    for name in wanted:
        if name not in variables:
            raise MessageInvalid(
                f"variable '{name}' has no value", field=f"{field}.{name}", rule="missing_variable"
            )
    return VARIABLE.sub(lambda m: variables[m.group(1)], body)


def _snapshot(t: Template) -> dict[str, object]:
    return {
        "name": t.name,
        "class": t.message_class,
        "bodies": t.bodies,
        "status": t.status,
        "reject_reason": t.reject_reason,
    }


async def get(session: AsyncSession, template_id: uuid.UUID) -> Template:
    t = (await session.execute(select(Template).where(Template.id == template_id))).scalar_one_or_none()
    if t is None:
        raise TemplateNotFound()
    return t


async def list_all(session: AsyncSession) -> list[Template]:
    return list(
        (await session.execute(select(Template).order_by(Template.created_at, Template.id))).scalars()
    )


def _check_bodies(bodies: dict[str, str]) -> None:
    for channel, body in bodies.items():
        if not body.strip():
            raise MessageInvalid(
                "a template body cannot be empty", field=f"bodies.{channel}", rule="required"
            )


async def create(session: AsyncSession, data: TemplateIn) -> Template:
    bodies: dict[str, str] = {str(k): v for k, v in data.bodies.items()}
    _check_bodies(bodies)
    t = Template(
        name=data.name,
        message_class=data.message_class,
        bodies=bodies,
        variables=variables_of(*bodies.values()),
        status="draft",
        external_id=data.external_id,
    )
    session.add(t)
    await session.flush()
    await audit.record(session, "template.create", "template", t.id, after=_snapshot(t))
    return t


async def update(session: AsyncSession, template_id: uuid.UUID, data: TemplatePatch) -> Template:
    t = await get(session, template_id)
    before = _snapshot(t)
    if data.bodies is not None:
        if t.status == "pending":
            raise TemplateStateConflict("a template under review cannot be edited")
        new_bodies: dict[str, str] = {str(k): v for k, v in data.bodies.items()}
        _check_bodies(new_bodies)
        t.bodies = new_bodies
        t.variables = variables_of(*t.bodies.values())
        t.status = "draft"  # an edited body needs a new approval
        t.reject_reason = None
    if data.name is not None:
        t.name = data.name
    if data.external_id is not None:
        t.external_id = data.external_id
    await session.flush()
    await audit.record(session, "template.update", "template", t.id, before=before, after=_snapshot(t))
    return t


async def delete(session: AsyncSession, template_id: uuid.UUID) -> None:
    t = await get(session, template_id)
    before = _snapshot(t)
    await session.delete(t)
    await session.flush()
    await audit.record(session, "template.delete", "template", template_id, before=before)


async def transition(
    session: AsyncSession, template_id: uuid.UUID, action: str, reason: str | None = None
) -> Template:
    """``submit`` (draft/rejected → pending), ``approve`` / ``reject`` (pending → approved/rejected)."""
    t = await get(session, template_id)
    before = _snapshot(t)
    allowed = {
        "submit": ({"draft", "rejected"}, "pending"),
        "approve": ({"pending"}, "approved"),
        "reject": ({"pending"}, "rejected"),
    }
    sources, target = allowed[action]
    if t.status not in sources:
        raise TemplateStateConflict(f"cannot {action} a template that is {t.status}", status_now=t.status)
    t.status = target
    t.reject_reason = reason if action == "reject" else None
    await session.flush()
    await audit.record(session, f"template.{action}", "template", t.id, before=before, after=_snapshot(t))
    return t
