"""Custom field definitions and validation of custom attribute values."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts.errors import DuplicateField, FieldNotFound, InvalidAttribute
from tessera.contacts.models import FieldDefinition
from tessera.contacts.repository import FieldRepository
from tessera.contacts.schemas import FieldCreate
from tessera.core.audit import service as audit
from tessera.core.http.errors import InvalidInput


def coerce_value(fdef: FieldDefinition, value: Any, *, field: str) -> Any:
    """The stored form of ``value`` for ``fdef`` or :class:`InvalidAttribute` naming the rule."""
    if value is None or value == "":
        return None
    t = fdef.type
    try:
        if t == "text":
            s = str(value)
            if len(s) > 2000:
                raise InvalidAttribute(
                    f"{fdef.key} is longer than 2000 characters", field=field, rule="max_length"
                )
            return s
        if t == "number":
            if isinstance(value, bool):
                raise ValueError
            num = float(value) if not isinstance(value, int) else value
            return int(num) if isinstance(num, float) and num.is_integer() else num
        if t == "date":
            if isinstance(value, dt.date):
                return value.isoformat()
            return dt.date.fromisoformat(str(value).strip().replace("/", "-")).isoformat()
        if t == "boolean":
            if isinstance(value, bool):
                return value
            s = str(value).strip().lower()
            if s in ("true", "1", "yes", "y", "是"):
                return True
            if s in ("false", "0", "no", "n", "否"):
                return False
            raise ValueError
        if t == "choice":
            if str(value) not in fdef.choices:
                raise InvalidAttribute(
                    f"'{value}' is not one of the choices of {fdef.key}: {', '.join(fdef.choices)}",
                    field=field,
                    rule="choice",
                )
            return str(value)
        if t == "multi_choice":
            items = (
                value
                if isinstance(value, list)
                else [v.strip() for v in str(value).replace("，", ",").split(",") if v.strip()]
            )
            bad = [str(v) for v in items if str(v) not in fdef.choices]
            if bad:
                raise InvalidAttribute(
                    f"{', '.join(bad)} not among the choices of {fdef.key}", field=field, rule="choice"
                )
            return [str(v) for v in items]
    except (ValueError, TypeError):
        raise InvalidAttribute(f"'{value}' is not a valid {t} for {fdef.key}", field=field, rule=t) from None
    raise InvalidAttribute(f"unknown field type {t}", field=field)


async def validate_attributes(
    session: AsyncSession,
    object_type: str,
    attrs: dict[str, Any],
    *,
    partial: bool,
    defs: dict[str, FieldDefinition] | None = None,
) -> dict[str, Any]:
    defs = defs if defs is not None else await FieldRepository(session).for_object(object_type)
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        fdef = defs.get(key)
        if fdef is None:
            raise InvalidAttribute(
                f"'{key}' is not a defined {object_type} field",
                field=f"attributes.{key}",
                rule="unknown_field",
            )
        coerced = coerce_value(fdef, value, field=f"attributes.{key}")
        if coerced is not None:
            out[key] = coerced
    if not partial:
        for key, fdef in defs.items():
            if fdef.required and key not in out:
                raise InvalidAttribute(f"{key} is required", field=f"attributes.{key}", rule="required")
    return out


async def list_fields(session: AsyncSession, object_type: str | None = None) -> list[FieldDefinition]:
    repo = FieldRepository(session)
    stmt = repo.select().order_by(FieldDefinition.object_type, FieldDefinition.key)
    if object_type:
        stmt = stmt.where(FieldDefinition.object_type == object_type)
    return await repo.all(stmt)


async def create_field(session: AsyncSession, data: FieldCreate) -> FieldDefinition:
    repo = FieldRepository(session)
    if data.type in ("choice", "multi_choice") and not data.choices:
        raise InvalidInput("choice fields need at least one choice", field="choices")
    if data.key in (await repo.for_object(data.object_type)):
        raise DuplicateField(f"field '{data.key}' already exists", field="key")
    f = await repo.create(FieldDefinition(**data.model_dump()))
    await audit.record(session, "contact_field.create", "contact_field", f.id, after=data.model_dump())
    return f


async def delete_field(session: AsyncSession, field_id: uuid.UUID) -> None:
    repo = FieldRepository(session)
    f = await repo.get(field_id)
    if f is None:
        raise FieldNotFound(field="field_id")
    await repo.delete(f)
    await audit.record(session, "contact_field.delete", "contact_field", field_id, before={"key": f.key})
