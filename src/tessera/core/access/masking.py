"""Field masking (desensitisation), in one place, from the caller's role.

Schemas mark personal-data fields with :data:`MaskedPhone`, :data:`MaskedEmail`, … and the
serialiser masks them unless the principal in scope holds ``pii:view``. Revealing a single
value on demand goes through :func:`tessera.core.access.service.unmask`, which needs
``pii:unmask`` and writes an audit row.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import PlainSerializer

from tessera.core import context


def mask_phone(value: str) -> str:
    digits = value.lstrip("+")
    if len(digits) <= 4:
        return "*" * len(value)
    if value.startswith("+86") and len(digits) == 13:
        local = digits[2:]
        return f"{local[:3]}****{local[-4:]}"
    if value.startswith("+"):
        keep_head = min(3, len(digits) - 4)
        return "+" + digits[:keep_head] + "*" * (len(digits) - keep_head - 4) + digits[-4:]
    if len(value) >= 11:
        return f"{value[:3]}****{value[-4:]}"
    return "*" * (len(value) - 4) + value[-4:]


def mask_email(value: str) -> str:
    local, at, domain = value.partition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"


def mask_id_number(value: str) -> str:
    if len(value) <= 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def mask_address(value: str) -> str:
    keep = max(2, len(value) // 4)
    return value[:keep] + "****"


def mask_name(value: str) -> str:
    return value[:1] + "*" * max(1, len(value) - 1)


MASKERS = {
    "phone": mask_phone,
    "email": mask_email,
    "id_number": mask_id_number,
    "address": mask_address,
}


def caller_sees_pii() -> bool:
    principal = context.current_principal()
    if principal is None:
        return True  # system and operator-run code paths (exports for the tenant's own admins)
    checker = getattr(principal, "has", None)
    return bool(checker and checker("pii:view"))


def mask(kind: str, value: str | None) -> str | None:
    if value is None or caller_sees_pii():
        return value
    return MASKERS[kind](value)


def _serializer(kind: str) -> PlainSerializer:
    return PlainSerializer(lambda v: mask(kind, v), return_type=Any, when_used="always")


MaskedPhone = Annotated[str, _serializer("phone")]
MaskedEmail = Annotated[str, _serializer("email")]
MaskedIdNumber = Annotated[str, _serializer("id_number")]
MaskedAddress = Annotated[str, _serializer("address")]
