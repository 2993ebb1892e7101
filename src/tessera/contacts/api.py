"""Contacts API: contacts, custom fields, accounts, tags, behaviour events, segments, imports
and exports. Parse, authorise, call the service, render."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import select

from tessera.contacts import errors
from tessera.contacts.models import Account, Contact, Segment
from tessera.contacts.repository import CONTACT_FILTERS, ContactRepository
from tessera.contacts.schemas import (
    AccountCreate,
    AccountOut,
    AccountUpdate,
    BulkUpsertRequest,
    BulkUpsertResult,
    ConsentOut,
    ConsentUpdate,
    ContactCreate,
    ContactOut,
    ContactUpdate,
    CountOut,
    DryRunOut,
    DuplicateSuggestionOut,
    EventAccepted,
    EventBatch,
    EventBatchResult,
    EventIn,
    ExportRequest,
    FieldCreate,
    FieldOut,
    ImportOut,
    MappingUpdate,
    MergeOut,
    MergeRequest,
    QualityOut,
    RefreshOut,
    SegmentCreate,
    SegmentOut,
    SegmentPreview,
    SegmentUpdate,
    StaticMembers,
    TagAssign,
    TagAssignResult,
    TagCreate,
    TagGroupCreate,
    TagGroupOut,
    TagOut,
    TagUpdate,
    Timeline,
)
from tessera.contacts.service import accounts as accounts_svc
from tessera.contacts.service import contacts as svc
from tessera.contacts.service import events as events_svc
from tessera.contacts.service import fields as fields_svc
from tessera.contacts.service import imports as imports_svc
from tessera.contacts.service import merge as merge_svc
from tessera.contacts.service import segments as seg_svc
from tessera.contacts.service import tags as tags_svc
from tessera.core.access.principal import Principal
from tessera.core.access.visibility import visible_owner_clause
from tessera.core.http.deps import DbSession, require
from tessera.core.http.errors import COMMON_ERRORS, error_responses
from tessera.core.http.listing import FilterField, FilterSet, ListQuery, Page, apply_listing, page_of
from tessera.core.http.middleware import register_upload_path

router = APIRouter(prefix="/v1", responses=COMMON_ERRORS)
register_upload_path("/v1/imports")  # contact files up to max_upload_bytes
R404 = error_responses(404)
R409 = error_responses(404, 409)

Read = Annotated[Principal, Depends(require("contacts:read"))]
Write = Annotated[Principal, Depends(require("contacts:write"))]
Import = Annotated[Principal, Depends(require("contacts:import"))]

ACCOUNT_FILTERS = FilterSet(
    fields={
        "name": FilterField(Account.name, operators=("eq", "contains")),
        "industry": FilterField(Account.industry, operators=("eq", "in")),
        "region": FilterField(Account.region),
        "owner_id": FilterField(Account.owner_id, kind=uuid.UUID),
        "parent_id": FilterField(Account.parent_id, kind=uuid.UUID),
    },
    sortable={"created_at": Account.created_at, "name": Account.name},
    id_column=Account.id,
)
SEGMENT_FILTERS = FilterSet(
    fields={"kind": FilterField(Segment.kind)},
    sortable={"created_at": Segment.created_at, "name": Segment.name},
    id_column=Segment.id,
)


# --- contacts ---------------------------------------------------------------------------------


@router.get("/contacts", tags=["contacts"], response_model=Page[ContactOut])
async def list_contacts(request: Request, principal: Read, session: DbSession) -> Page[ContactOut]:
    """List contacts visible to the caller. Filters: `name__contains`, `city`, `lifecycle_stage`,
    `source`, `owner_id`, `account_id`, `created_at__gte/lte`."""
    q = ListQuery.from_params(request.query_params, CONTACT_FILTERS)
    stmt = (
        ContactRepository(session).live().where(visible_owner_clause(Contact.owner_id, principal, "contacts"))
    )
    rows = list((await session.execute(apply_listing(stmt, q, CONTACT_FILTERS))).scalars())
    items, cursor = page_of(rows, q, CONTACT_FILTERS)
    return Page[ContactOut](items=await svc.render(session, items), next_cursor=cursor)


@router.post("/contacts", tags=["contacts"], response_model=ContactOut, status_code=201, responses=R409)
async def create_contact(
    body: ContactCreate,
    principal: Write,
    session: DbSession,
    response: Response,
    on_conflict: Literal["error", "merge"] = "error",
) -> ContactOut:
    """Create a contact. An existing phone/email/channel id answers 409
    `contact.duplicate_identity` with `details.existing_id`, or with `on_conflict=merge` fills
    that contact and answers 200."""
    if body.owner_id is None and principal.user_id is not None:
        body.owner_id = principal.user_id
    contact, created = await svc.create_contact(session, body, on_conflict=on_conflict)
    if not created:
        response.status_code = 200
    return (await svc.render(session, [contact]))[0]


@router.post("/contacts/bulk", tags=["contacts"], response_model=BulkUpsertResult)
async def bulk_upsert(body: BulkUpsertRequest, principal: Import, session: DbSession) -> BulkUpsertResult:
    """Upsert up to 5,000 contacts by identity; a result per record. Send an Idempotency-Key."""
    return await imports_svc.bulk_upsert(session, body.records)


@router.get("/contacts/quality", tags=["contacts"], response_model=QualityOut)
async def data_quality(principal: Read, session: DbSession) -> QualityOut:
    """Completeness per field, invalid phones/emails and duplicate rate."""
    return await imports_svc.quality(session)


@router.get("/contacts/lookup", tags=["contacts"], response_model=ContactOut, responses=R404)
async def lookup(
    principal: Read,
    session: DbSession,
    kind: Literal["phone", "email", "wechat_openid", "wechat_unionid", "wecom_external_id", "device_id"],
    value: Annotated[str, Query(min_length=1, max_length=200)],
) -> ContactOut:
    """Find the contact owning an identity (normalised like on write)."""
    found = await svc.find_contact_by_identity(session, kind, value)
    if found is None or found.merged_into_id is not None:
        raise errors.ContactNotFound(field="value")
    contact = await svc.get_contact(session, found.id, principal)
    return (await svc.render(session, [contact]))[0]


@router.get("/contacts/{contact_id}", tags=["contacts"], response_model=ContactOut, responses=R404)
async def get_contact(contact_id: uuid.UUID, principal: Read, session: DbSession) -> ContactOut:
    contact = await svc.get_contact(session, contact_id, principal)
    return (await svc.render(session, [contact]))[0]


@router.patch("/contacts/{contact_id}", tags=["contacts"], response_model=ContactOut, responses=R409)
async def update_contact(
    contact_id: uuid.UUID, body: ContactUpdate, principal: Write, session: DbSession
) -> ContactOut:
    contact = await svc.update_contact(session, contact_id, body, principal)
    return (await svc.render(session, [contact]))[0]


@router.delete("/contacts/{contact_id}", tags=["contacts"], status_code=204, responses=R404)
async def delete_contact(contact_id: uuid.UUID, principal: Write, session: DbSession) -> None:
    await svc.delete_contact(session, contact_id, principal)


@router.put("/contacts/{contact_id}/consent", tags=["contacts"], response_model=ConsentOut, responses=R404)
async def set_consent(
    contact_id: uuid.UUID, body: ConsentUpdate, principal: Write, session: DbSession
) -> ConsentOut:
    await svc.get_contact(session, contact_id, principal)
    row = await svc.set_consent(session, contact_id, body.channel, body.status, body.source)
    return ConsentOut(status=row.status, source=row.source, updated_at=row.updated_at)  # type: ignore[arg-type]


@router.get(
    "/contacts/{contact_id}/duplicates",
    tags=["contacts"],
    response_model=list[DuplicateSuggestionOut],
    responses=R404,
)
async def duplicates(
    contact_id: uuid.UUID,
    principal: Read,
    session: DbSession,
    min_score: Annotated[int, Query(ge=0, le=100)] = 60,
) -> list[DuplicateSuggestionOut]:
    """Likely duplicates (fuzzy name, account, city, phone ending) with score and reasons."""
    found = await merge_svc.suggest_duplicates(session, contact_id, min_score=min_score, principal=principal)
    return [
        DuplicateSuggestionOut(contact_id=c.id, name=c.name, score=s.score, reasons=s.reasons)
        for c, s in found
    ]


@router.post("/contacts/{contact_id}/merge", tags=["contacts"], response_model=MergeOut, responses=R404)
async def merge(contact_id: uuid.UUID, body: MergeRequest, principal: Write, session: DbSession) -> MergeOut:
    """Merge `loser_id` into this contact; everything moves, the loser's values are kept in the
    merge history."""
    rec = await merge_svc.merge_contacts(
        session, contact_id, body.loser_id, dict(body.field_winners), principal
    )
    return MergeOut(
        id=rec.id,
        survivor_id=rec.survivor_id,
        loser_id=rec.loser_id,
        field_winners=rec.field_winners,
        merged_at=rec.merged_at,
    )


@router.get("/contacts/{contact_id}/timeline", tags=["contacts"], response_model=Timeline, responses=R404)
async def timeline(
    contact_id: uuid.UUID,
    principal: Read,
    session: DbSession,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> Timeline:
    return Timeline(items=await events_svc.timeline(session, contact_id, limit, principal))


@router.delete("/contacts/{contact_id}/tags/{tag_id}", tags=["tags"], status_code=204, responses=R404)
async def untag(contact_id: uuid.UUID, tag_id: uuid.UUID, principal: Write, session: DbSession) -> None:
    await svc.get_contact(session, contact_id, principal)
    await tags_svc.untag(session, contact_id, tag_id)


# --- custom fields ----------------------------------------------------------------------------


@router.get("/contact-fields", tags=["contacts"], response_model=list[FieldOut])
async def list_fields(
    principal: Read, session: DbSession, object_type: Literal["contact", "account"] | None = None
) -> list[FieldOut]:
    return [FieldOut.model_validate(f) for f in await fields_svc.list_fields(session, object_type)]


@router.post("/contact-fields", tags=["contacts"], response_model=FieldOut, status_code=201, responses=R409)
async def create_field(
    body: FieldCreate, principal: Annotated[Principal, Depends(require("admin:settings"))], session: DbSession
) -> FieldOut:
    return FieldOut.model_validate(await fields_svc.create_field(session, body))


@router.delete("/contact-fields/{field_id}", tags=["contacts"], status_code=204, responses=R404)
async def delete_field(
    field_id: uuid.UUID,
    principal: Annotated[Principal, Depends(require("admin:settings"))],
    session: DbSession,
) -> None:
    await fields_svc.delete_field(session, field_id)


# --- accounts ---------------------------------------------------------------------------------


@router.get("/accounts", tags=["accounts"], response_model=Page[AccountOut])
async def list_accounts(request: Request, principal: Read, session: DbSession) -> Page[AccountOut]:
    q = ListQuery.from_params(request.query_params, ACCOUNT_FILTERS)
    stmt = select(Account).where(visible_owner_clause(Account.owner_id, principal, "accounts"))
    rows = list((await session.execute(apply_listing(stmt, q, ACCOUNT_FILTERS))).scalars())
    items, cursor = page_of(rows, q, ACCOUNT_FILTERS)
    return Page[AccountOut](items=[AccountOut.model_validate(a) for a in items], next_cursor=cursor)


@router.post("/accounts", tags=["accounts"], response_model=AccountOut, status_code=201, responses=R404)
async def create_account(body: AccountCreate, principal: Write, session: DbSession) -> AccountOut:
    if body.owner_id is None and principal.user_id is not None:
        body.owner_id = principal.user_id
    return AccountOut.model_validate(await accounts_svc.create_account(session, body))


@router.get("/accounts/{account_id}", tags=["accounts"], response_model=AccountOut, responses=R404)
async def get_account(account_id: uuid.UUID, principal: Read, session: DbSession) -> AccountOut:
    return AccountOut.model_validate(await accounts_svc.get_account(session, account_id, principal))


@router.patch("/accounts/{account_id}", tags=["accounts"], response_model=AccountOut, responses=R404)
async def update_account(
    account_id: uuid.UUID, body: AccountUpdate, principal: Write, session: DbSession
) -> AccountOut:
    return AccountOut.model_validate(await accounts_svc.update_account(session, account_id, body, principal))


@router.delete("/accounts/{account_id}", tags=["accounts"], status_code=204, responses=R404)
async def delete_account(account_id: uuid.UUID, principal: Write, session: DbSession) -> None:
    await accounts_svc.delete_account(session, account_id, principal)


# --- tags -------------------------------------------------------------------------------------


@router.get("/tag-groups", tags=["tags"], response_model=list[TagGroupOut])
async def list_tag_groups(principal: Read, session: DbSession) -> list[TagGroupOut]:
    return [TagGroupOut.model_validate(g) for g in await tags_svc.ensure_seed_groups(session)]


@router.post("/tag-groups", tags=["tags"], response_model=TagGroupOut, status_code=201, responses=R409)
async def create_tag_group(body: TagGroupCreate, principal: Write, session: DbSession) -> TagGroupOut:
    return TagGroupOut.model_validate(await tags_svc.create_group(session, body))


@router.get("/tags", tags=["tags"], response_model=list[TagOut])
async def list_tags(principal: Read, session: DbSession) -> list[TagOut]:
    return [TagOut.model_validate(t) for t in await tags_svc.list_tags(session)]


@router.post("/tags", tags=["tags"], response_model=TagOut, status_code=201, responses=R409)
async def create_tag(body: TagCreate, principal: Write, session: DbSession) -> TagOut:
    return TagOut.model_validate(await tags_svc.create_tag(session, body))


@router.patch("/tags/{tag_id}", tags=["tags"], response_model=TagOut, responses=R409)
async def update_tag(tag_id: uuid.UUID, body: TagUpdate, principal: Write, session: DbSession) -> TagOut:
    """Rename a tag, or make it a rule tag following a dynamic segment (``segment_id``; null
    turns it back into a manual tag, keeping its links)."""
    return TagOut.model_validate(await tags_svc.update_tag(session, tag_id, body))


@router.post("/tags/assign", tags=["tags"], response_model=TagAssignResult, responses=R404)
async def assign_tags(body: TagAssign, principal: Write, session: DbSession) -> TagAssignResult:
    """Tag many contacts with many tags (bulk tagging)."""
    stmt = select(Contact.id).where(
        Contact.id.in_(body.contact_ids), visible_owner_clause(Contact.owner_id, principal, "contacts")
    )
    visible = set((await session.execute(stmt)).scalars())
    if visible != set(body.contact_ids):
        raise errors.ContactNotFound("a contact does not exist", field="contact_ids")
    return TagAssignResult(linked=await tags_svc.assign_tags(session, body.contact_ids, body.tag_ids))


# --- behaviour events -------------------------------------------------------------------------


@router.post("/events", tags=["events"], response_model=EventAccepted, status_code=201, responses=R404)
async def track_event(body: EventIn, principal: Write, session: DbSession) -> EventAccepted:
    """Record a behaviour event of a contact (by id or by phone/email/channel id)."""
    eid, cid = await events_svc.record_event(session, body)
    return EventAccepted(id=eid, contact_id=cid)


@router.post("/events/batch", tags=["events"], response_model=EventBatchResult)
async def track_events(body: EventBatch, principal: Write, session: DbSession) -> EventBatchResult:
    """Up to 1,000 events; unresolvable ones are reported by index, the rest are stored."""
    accepted, rejected = await events_svc.record_events(session, body.events)
    return EventBatchResult(accepted=accepted, rejected=rejected)


# --- segments ---------------------------------------------------------------------------------


@router.get("/segments", tags=["segments"], response_model=Page[SegmentOut])
async def list_segments(request: Request, principal: Read, session: DbSession) -> Page[SegmentOut]:
    q = ListQuery.from_params(request.query_params, SEGMENT_FILTERS)
    rows = list((await session.execute(apply_listing(select(Segment), q, SEGMENT_FILTERS))).scalars())
    items, cursor = page_of(rows, q, SEGMENT_FILTERS)
    return Page[SegmentOut](items=[SegmentOut.model_validate(s) for s in items], next_cursor=cursor)


@router.post("/segments", tags=["segments"], response_model=SegmentOut, status_code=201)
async def create_segment(body: SegmentCreate, principal: Write, session: DbSession) -> SegmentOut:
    return SegmentOut.model_validate(await seg_svc.create_segment(session, body))


@router.post("/segments/preview", tags=["segments"], response_model=CountOut)
async def preview_segment(body: SegmentPreview, principal: Read, session: DbSession) -> CountOut:
    """How many contacts match these rules now (one SQL query)."""
    return CountOut(count=await seg_svc.count_matching(session, body.rules))


@router.get("/segments/{segment_id}", tags=["segments"], response_model=SegmentOut, responses=R404)
async def get_segment(segment_id: uuid.UUID, principal: Read, session: DbSession) -> SegmentOut:
    return SegmentOut.model_validate(await seg_svc.get_segment(session, segment_id))


@router.patch("/segments/{segment_id}", tags=["segments"], response_model=SegmentOut, responses=R404)
async def update_segment(
    segment_id: uuid.UUID, body: SegmentUpdate, principal: Write, session: DbSession
) -> SegmentOut:
    return SegmentOut.model_validate(await seg_svc.update_segment(session, segment_id, body))


@router.delete("/segments/{segment_id}", tags=["segments"], status_code=204, responses=R404)
async def delete_segment(segment_id: uuid.UUID, principal: Write, session: DbSession) -> None:
    await seg_svc.delete_segment(session, segment_id)


@router.get("/segments/{segment_id}/count", tags=["segments"], response_model=CountOut, responses=R404)
async def count_segment(segment_id: uuid.UUID, principal: Read, session: DbSession) -> CountOut:
    seg = await seg_svc.get_segment(session, segment_id)
    if seg.kind == "dynamic" and seg.rules:
        return CountOut(count=await seg_svc.count_matching(session, seg.rules))
    return CountOut(count=len(await seg_svc.segment_member_ids(session, seg.id)))


@router.post("/segments/{segment_id}/refresh", tags=["segments"], response_model=RefreshOut, responses=R404)
async def refresh_segment(segment_id: uuid.UUID, principal: Write, session: DbSession) -> RefreshOut:
    """Re-materialise membership; publishes `segment.entered` / `segment.left`."""
    n, entered, left = await seg_svc.refresh_segment(session, segment_id)
    return RefreshOut(member_count=n, entered=entered, left=left)


@router.post("/segments/{segment_id}/members", tags=["segments"], response_model=CountOut, responses=R404)
async def add_members(
    segment_id: uuid.UUID, body: StaticMembers, principal: Write, session: DbSession
) -> CountOut:
    return CountOut(count=await seg_svc.add_members(session, segment_id, body.contact_ids))


@router.post(
    "/segments/{segment_id}/members/remove", tags=["segments"], response_model=CountOut, responses=R404
)
async def remove_members(
    segment_id: uuid.UUID, body: StaticMembers, principal: Write, session: DbSession
) -> CountOut:
    return CountOut(count=await seg_svc.remove_members(session, segment_id, body.contact_ids))


# --- imports and exports ----------------------------------------------------------------------


@router.post(
    "/imports",
    tags=["imports"],
    response_model=ImportOut,
    status_code=201,
    responses=error_responses(413, 422),
)
async def upload_import(
    request: Request,
    principal: Import,
    session: DbSession,
    filename: Annotated[str, Query(min_length=1, max_length=300)],
) -> ImportOut:
    """Upload a CSV (UTF-8 or GBK) or XLSX file as the request body; answers the automatic
    column mapping, which `PATCH /imports/{id}/mapping` can change."""
    raw = await request.body()
    job = await imports_svc.upload(session, filename, raw)
    return imports_svc.job_out(job, job.options.get("headers"))


@router.get("/imports/{import_id}", tags=["imports"], response_model=ImportOut, responses=R404)
async def get_import(import_id: uuid.UUID, principal: Import, session: DbSession) -> ImportOut:
    """Status and progress (rows done, rows/s, ETA)."""
    job = await imports_svc.get_job(session, import_id)
    return imports_svc.job_out(job, job.options.get("headers"))


@router.patch("/imports/{import_id}/mapping", tags=["imports"], response_model=ImportOut, responses=R404)
async def set_mapping(
    import_id: uuid.UUID, body: MappingUpdate, principal: Import, session: DbSession
) -> ImportOut:
    job = await imports_svc.set_mapping(session, import_id, body.mapping)
    return imports_svc.job_out(job, job.options.get("headers"))


@router.post("/imports/{import_id}/dry-run", tags=["imports"], response_model=DryRunOut, responses=R404)
async def dry_run(import_id: uuid.UUID, principal: Import, session: DbSession) -> DryRunOut:
    """Validate every row without writing: each problem with row, field and rule."""
    return await imports_svc.dry_run(session, import_id)


@router.post(
    "/imports/{import_id}/start", tags=["imports"], response_model=ImportOut, status_code=202, responses=R409
)
async def start_import(import_id: uuid.UUID, principal: Import, session: DbSession) -> ImportOut:
    job = await imports_svc.start_import(session, import_id)
    return imports_svc.job_out(job, job.options.get("headers"))


@router.post("/imports/{import_id}/cancel", tags=["imports"], response_model=ImportOut, responses=R409)
async def cancel_import(import_id: uuid.UUID, principal: Import, session: DbSession) -> ImportOut:
    job = await imports_svc.cancel(session, import_id)
    return imports_svc.job_out(job, job.options.get("headers"))


@router.get("/imports/{import_id}/errors", tags=["imports"], responses=R404)
async def import_errors(import_id: uuid.UUID, principal: Import, session: DbSession) -> Response:
    """CSV of the rejected rows with their reasons."""
    job = await imports_svc.get_job(session, import_id)
    if job.kind != "import":
        raise errors.ImportNotFound(field="import_id")
    return Response(imports_svc.error_file(job), media_type="text/csv; charset=utf-8")


@router.post("/contact-exports", tags=["imports"], response_model=ImportOut, status_code=202, responses=R404)
async def start_export(body: ExportRequest, principal: Import, session: DbSession) -> ImportOut:
    """Export contacts (list filters or a segment) to CSV as a job; masking follows the caller."""
    if body.segment_id is not None:
        await seg_svc.get_segment(session, body.segment_id)
    return imports_svc.job_out(await imports_svc.start_export(session, body.filters, body.segment_id))


@router.get("/contact-exports/{export_id}", tags=["imports"], response_model=ImportOut, responses=R404)
async def get_export(export_id: uuid.UUID, principal: Import, session: DbSession) -> ImportOut:
    return imports_svc.job_out(await imports_svc.get_job(session, export_id))


@router.get("/contact-exports/{export_id}/file", tags=["imports"], responses=R404)
async def export_file(export_id: uuid.UUID, principal: Import, session: DbSession) -> Response:
    job = await imports_svc.get_job(session, export_id)
    if job.kind != "export" or job.status != "done":
        raise errors.ImportNotFound("the export is not ready", field="export_id")
    return Response(imports_svc.error_file(job), media_type="text/csv; charset=utf-8")
