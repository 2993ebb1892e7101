"""Contact use cases: create/update with identity dedupe, lookups, consent, rendering."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts import events
from tessera.contacts.dedupe import normalize_identity
from tessera.contacts.errors import AccountNotFound, ContactNotFound, DuplicateIdentity
from tessera.contacts.models import Contact, ContactConsent, ContactIdentity
from tessera.contacts.repository import AccountRepository, ContactRepository
from tessera.contacts.schemas import (
    ConsentOut,
    ContactCreate,
    ContactOut,
    ContactUpdate,
    EmailOut,
    IdentityOut,
    PhoneOut,
)
from tessera.contacts.service.fields import validate_attributes
from tessera.core import context
from tessera.core.access.principal import Principal
from tessera.core.access.visibility import visible_owner_clause
from tessera.core.audit import service as audit
from tessera.core.crypto.types import blind_index
from tessera.core.db.base import utcnow
from tessera.core.identity import service as identity
from tessera.core.tenancy import service as tenancy

OnConflict = Literal["error", "merge"]
SNAPSHOT_FIELDS = (
    "name",
    "given_name",
    "family_name",
    "gender",
    "birthday",
    "address",
    "city",
    "language",
    "account_id",
    "owner_id",
    "source",
    "lifecycle_stage",
    "attributes",
)


async def tenant_region(session: AsyncSession) -> str:
    cached = session.info.get("contacts_region")
    if cached is None:
        tenant = await tenancy.get_tenant(session, context.current_tenant_id())
        cached = session.info["contacts_region"] = tenant.default_region or "CN"
    return str(cached)


def snapshot(c: Contact) -> dict[str, Any]:
    return {f: getattr(c, f) for f in SNAPSHOT_FIELDS}


async def get_contact(
    session: AsyncSession, contact_id: uuid.UUID, principal: Principal | None = None
) -> Contact:
    """The contact, or 404 when missing, merged away, foreign or not visible to ``principal``."""
    repo = ContactRepository(session)
    stmt = repo.live().where(Contact.id == contact_id)
    if principal is not None:
        stmt = stmt.where(visible_owner_clause(Contact.owner_id, principal, "contacts"))
    contact = await repo.one_or_none(stmt)
    if contact is None:
        raise ContactNotFound(field="contact_id")
    return contact


async def _check_references(session: AsyncSession, data: ContactCreate | ContactUpdate) -> None:
    if data.account_id is not None and await AccountRepository(session).get(data.account_id) is None:
        raise AccountNotFound("the account does not exist", field="account_id")
    await identity.ensure_user(session, data.owner_id, field="owner_id")


def _normalised_identities(data: ContactCreate | ContactUpdate, region: str) -> list[tuple[str, str, bool]]:
    out: list[tuple[str, str, bool]] = []
    seen: set[tuple[str, str]] = set()
    for kind, values in (("phone", data.phones), ("email", data.emails)):
        for i, raw in enumerate(values or []):
            value = normalize_identity(kind, raw, region, field=f"{kind}s[{i}]")
            if (kind, value) not in seen:
                seen.add((kind, value))
                out.append((kind, value, not any(k == kind for k, _, _ in out)))
    for i, ident in enumerate(getattr(data, "identities", []) or []):
        value = normalize_identity(ident.kind, ident.value, region, field=f"identities[{i}].value")
        if (ident.kind, value) not in seen:
            seen.add((ident.kind, value))
            out.append((ident.kind, value, not any(k == ident.kind for k, _, _ in out)))
    return out


async def _existing_owner(
    session: AsyncSession, idents: list[tuple[str, str, bool]]
) -> tuple[uuid.UUID, str] | None:
    repo = ContactRepository(session)
    for kind, value, _ in idents:
        found = await repo.by_index(kind, blind_index(kind, value))
        if found is not None:
            return found.contact_id, kind
    return None


def _apply_fields(contact: Contact, data: ContactCreate | ContactUpdate, *, only_empty: bool = False) -> None:
    for f in (
        "name",
        "given_name",
        "family_name",
        "gender",
        "address",
        "city",
        "language",
        "account_id",
        "owner_id",
        "source",
        "lifecycle_stage",
    ):
        if f not in data.model_fields_set:
            continue
        value = getattr(data, f)
        if value is None and f in ("name", "lifecycle_stage"):
            continue
        if only_empty and getattr(contact, f) not in (None, ""):
            continue
        setattr(contact, f, value)
    if "birthday" in data.model_fields_set and not (only_empty and contact.birthday):
        contact.birthday = data.birthday.isoformat() if data.birthday else None


async def create_contact(
    session: AsyncSession, data: ContactCreate, *, on_conflict: OnConflict = "error", retried: bool = False
) -> tuple[Contact, bool]:
    """Create a contact; (contact, created). An existing identity answers 409
    ``contact.duplicate_identity`` naming the existing contact, or with ``on_conflict="merge"``
    fills the existing contact's empty fields and adds the new identities. That holds for an
    identity created by a concurrent request too (``retried``: the second, internal attempt)."""
    region = await tenant_region(session)
    idents = _normalised_identities(data, region)
    await _check_references(session, data)
    attrs = await validate_attributes(session, "contact", data.attributes or {}, partial=False)
    owner = await _existing_owner(session, idents)
    if owner is not None:
        existing_id, kind = owner
        if on_conflict != "merge":
            raise DuplicateIdentity(
                f"a contact with this {kind} already exists",
                field=f"{kind}s" if kind in ("phone", "email") else "identities",
                existing_id=str(existing_id),
            )
        contact = await get_contact(session, existing_id)
        before = snapshot(contact)
        _apply_fields(contact, data, only_empty=True)
        contact.attributes = {**attrs, **(contact.attributes or {})}
        await _add_identities(session, contact, idents)
        await _apply_consent_and_tags(session, contact.id, data)
        await session.flush()
        await audit.record(
            session, "contact.update", "contact", contact.id, before=before, after=snapshot(contact)
        )
        await events.publish(session, events.CONTACT_UPDATED, {"contact_id": str(contact.id)})
        return contact, False
    contact = Contact(name=data.name, lifecycle_stage=data.lifecycle_stage or "lead", attributes=attrs)
    _apply_fields(contact, data)
    try:
        async with session.begin_nested():
            session.add(contact)
            await session.flush()
            await _add_identities(session, contact, idents)
    except IntegrityError as exc:
        if retried or "contact_identities" not in str(exc.orig):
            raise
        # Another request created one of these identities after the lookup above (the unique
        # index waited for its commit): answer as if it had been there when we looked.
        return await create_contact(session, data, on_conflict=on_conflict, retried=True)
    await _apply_consent_and_tags(session, contact.id, data)
    await session.flush()
    await audit.record(session, "contact.create", "contact", contact.id, after=snapshot(contact))
    await events.publish(session, events.CONTACT_CREATED, {"contact_id": str(contact.id)})
    return contact, True


async def _add_identities(
    session: AsyncSession, contact: Contact, idents: list[tuple[str, str, bool]]
) -> None:
    repo = ContactRepository(session)
    current = (await repo.identities([contact.id])).get(contact.id, [])
    have_primary = {i.kind for i in current if i.is_primary}
    have = {(i.kind, i.value_index) for i in current}
    for kind, value, _ in idents:
        idx = blind_index(kind, value)
        if (kind, idx) in have:
            continue
        other = await repo.by_index(kind, idx)
        if other is not None:
            raise DuplicateIdentity(
                f"this {kind} belongs to another contact",
                field=f"{kind}s",
                existing_id=str(other.contact_id),
            )
        primary = kind not in have_primary
        have_primary.add(kind)
        have.add((kind, idx))
        session.add(
            ContactIdentity(
                contact_id=contact.id, kind=kind, value=value, value_index=idx, is_primary=primary
            )
        )
        if kind == "phone" and primary:
            contact.phone_tail = value[-4:]


async def _apply_consent_and_tags(session: AsyncSession, contact_id: uuid.UUID, data: Any) -> None:
    for channel, c in (getattr(data, "consent", None) or {}).items():
        await set_consent(session, contact_id, channel, c.status, c.source, audit_it=False)
    tag_ids = getattr(data, "tag_ids", None) or []
    if tag_ids:
        from tessera.contacts.service.tags import assign_tags

        await assign_tags(session, [contact_id], tag_ids, source="api", audit_it=False)


async def update_contact(
    session: AsyncSession, contact_id: uuid.UUID, data: ContactUpdate, principal: Principal | None = None
) -> Contact:
    contact = await get_contact(session, contact_id, principal)
    before = snapshot(contact)
    region = await tenant_region(session)
    await _check_references(session, data)
    _apply_fields(contact, data)
    if data.attributes is not None:
        merged = {**(contact.attributes or {}), **data.attributes}
        contact.attributes = await validate_attributes(session, "contact", merged, partial=False)
    repo = ContactRepository(session)
    for kind, values in (("phone", data.phones), ("email", data.emails)):
        if values is None:
            continue
        idents = [
            (kind, normalize_identity(kind, raw, region, field=f"{kind}s[{i}]"), i == 0)
            for i, raw in enumerate(values)
        ]
        await repo.delete_identities(contact.id, kind)
        await session.flush()
        if kind == "phone":
            contact.phone_tail = None
        await _add_identities(session, contact, idents)
    await session.flush()
    await audit.record(
        session, "contact.update", "contact", contact.id, before=before, after=snapshot(contact)
    )
    await events.publish(session, events.CONTACT_UPDATED, {"contact_id": str(contact.id)})
    return contact


async def delete_contact(
    session: AsyncSession, contact_id: uuid.UUID, principal: Principal | None = None
) -> None:
    contact = await get_contact(session, contact_id, principal)
    before = snapshot(contact)
    await ContactRepository(session).delete(contact)
    await audit.record(session, "contact.delete", "contact", contact_id, before=before)


async def find_contact_by_identity(session: AsyncSession, kind: str, raw: str) -> Contact | None:
    """Public lookup for other contexts (e.g. Connect inbound SMS): by phone, email or channel
    id, normalised the same way as on write. Invalid input returns None."""
    from tessera.core.http.errors import InvalidInput

    try:
        value = normalize_identity(kind, raw, await tenant_region(session))
    except InvalidInput:
        return None
    return await ContactRepository(session).by_identity(kind, blind_index(kind, value))


async def find_contact_by_phone(session: AsyncSession, phone: str) -> Contact | None:
    return await find_contact_by_identity(session, "phone", phone)


async def set_consent(
    session: AsyncSession,
    contact_id: uuid.UUID,
    channel: str,
    status: str,
    source: str | None = None,
    *,
    audit_it: bool = True,
) -> ContactConsent:
    repo = ContactRepository(session)
    row = await repo.consent(contact_id, channel)
    before = row.status if row else "unknown"
    if row is None:
        row = ContactConsent(
            contact_id=contact_id, channel=channel, status=status, source=source, updated_at=utcnow()
        )
        session.add(row)
    else:
        row.status, row.source, row.updated_at = status, source, utcnow()
    await session.flush()
    if audit_it and before != status:
        await audit.record(
            session,
            "contact.consent",
            "contact",
            contact_id,
            changes={f"consent.{channel}": [before, status], "source": source},
        )
    return row


async def consent_status(session: AsyncSession, contact_id: uuid.UUID, channel: str) -> str:
    """``opted_in`` / ``opted_out`` / ``unknown`` of one contact on one channel."""
    row = await ContactRepository(session).consent(contact_id, channel)
    return row.status if row else "unknown"


async def consent_for_identity(session: AsyncSession, kind: str, raw: str, channel: str) -> str:
    """Consent of whoever owns a phone/email (``unknown`` when nobody does) — for Connect."""
    contact = await find_contact_by_identity(session, kind, raw)
    if contact is None:
        return "unknown"
    return await consent_status(session, contact.id, channel)


async def render(session: AsyncSession, contacts: list[Contact]) -> list[ContactOut]:
    """Response models for ``contacts`` in three queries whatever their number."""
    repo = ContactRepository(session)
    ids = [c.id for c in contacts]
    idents = await repo.identities(ids)
    consents = await repo.consents(ids)
    tags = await repo.tag_ids(ids)
    out = []
    for c in contacts:
        mine = idents.get(c.id, [])
        out.append(
            ContactOut(
                id=c.id,
                name=c.name,
                given_name=c.given_name,
                family_name=c.family_name,
                gender=c.gender,
                birthday=c.birthday,
                address=c.address,
                city=c.city,
                language=c.language,
                account_id=c.account_id,
                owner_id=c.owner_id,
                source=c.source,
                lifecycle_stage=c.lifecycle_stage,
                attributes=c.attributes or {},
                phones=[PhoneOut(value=i.value, primary=i.is_primary) for i in mine if i.kind == "phone"],
                emails=[EmailOut(value=i.value, primary=i.is_primary) for i in mine if i.kind == "email"],
                identities=[
                    IdentityOut(kind=i.kind, value=i.value) for i in mine if i.kind not in ("phone", "email")
                ],
                consent={
                    ch.channel: ConsentOut(status=ch.status, source=ch.source, updated_at=ch.updated_at)  # type: ignore[arg-type]
                    for ch in consents.get(c.id, [])
                },
                tag_ids=tags.get(c.id, []),
                created_at=c.created_at,
                updated_at=c.updated_at,
            )
        )
    return out
