"""Read paths and small use cases the customer-data console pages need (imports, segments,
exports, data quality) on top of the public services in ``imports`` and ``segments``.

- Data-quality figures are computed by :func:`imports.quality` and kept as a snapshot (a
  ``DataJob`` of kind ``quality``) so the dashboard does not rescan every identity on each view;
  :func:`recompute_quality` refreshes it on demand.
- Export downloads use links signed with the tenant's keyed HMAC, bound to the user who asked
  and expiring after ``LINK_TTL``; XLSX is produced from the export service's CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import secrets
import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts.errors import ImportNotFound
from tessera.contacts.models import Contact, DataJob, FieldDefinition, Segment, SegmentMember, Tag
from tessera.contacts.schemas import QualityOut
from tessera.contacts.service import imports as imports_svc
from tessera.core.access.principal import Principal
from tessera.core.access.visibility import visible_owner_clause
from tessera.core.audit import service as audit
from tessera.core.crypto.types import blind_index
from tessera.core.db.base import utcnow
from tessera.core.http.errors import Forbidden, NotFound
from tessera.core.http.listing import FilterField, FilterSet

LINK_TTL = dt.timedelta(hours=1)
EXPORT_FORMATS = ("csv", "xlsx")


class ExportLinkInvalid(NotFound):
    """The download link is not valid."""

    code = "export.link_invalid"


class ExportLinkExpired(Forbidden):
    """The download link has expired; start a new export."""

    code = "export.link_expired"


IMPORT_FILTERS = FilterSet(
    fields={
        "status": FilterField(
            DataJob.status,
            choices=("uploaded", "validated", "queued", "running", "done", "failed", "cancelled"),
        ),
        "filename": FilterField(DataJob.filename, operators=("contains",)),
        "created_at": FilterField(DataJob.created_at, kind=dt.datetime, operators=("gte", "lte")),
    },
    sortable={"created_at": DataJob.created_at},
    id_column=DataJob.id,
)
SEGMENT_LIST_FILTERS = FilterSet(
    fields={
        "name": FilterField(Segment.name, operators=("contains",)),
        "kind": FilterField(Segment.kind, choices=("dynamic", "static")),
    },
    sortable={"created_at": Segment.created_at, "name": Segment.name},
    id_column=Segment.id,
)
MEMBER_FILTERS = FilterSet(
    fields={"name": FilterField(Contact.name, operators=("contains",))},
    sortable={"created_at": Contact.created_at, "name": Contact.name},
    id_column=Contact.id,
)


# --- imports --------------------------------------------------------------------------------


def imports_query() -> Select[Any]:
    return select(DataJob).where(DataJob.kind == "import")


async def get_import(session: AsyncSession, job_id: uuid.UUID) -> DataJob:
    job = await imports_svc.get_job(session, job_id)
    if job.kind != "import":
        raise ImportNotFound(field="import_id")
    return job


async def import_targets(session: AsyncSession) -> list[tuple[str, str]]:
    """(target, label) of the custom contact fields an import column can map to."""
    rows = (
        await session.execute(
            select(FieldDefinition.key, FieldDefinition.label)
            .where(FieldDefinition.object_type == "contact")
            .order_by(FieldDefinition.label)
        )
    ).all()
    return [(f"attributes.{k}", label) for k, label in rows]


# --- segments -------------------------------------------------------------------------------


def segments_query() -> Select[Any]:
    return select(Segment)


def members_query(segment_id: uuid.UUID, principal: Principal) -> Select[Any]:
    """Live contacts in a segment's materialised membership, as visible to ``principal``."""
    return select(Contact).where(
        Contact.merged_into_id.is_(None),
        Contact.id.in_(select(SegmentMember.contact_id).where(SegmentMember.segment_id == segment_id)),
        visible_owner_clause(Contact.owner_id, principal, "contacts"),
    )


async def member_candidates(
    session: AsyncSession, segment_id: uuid.UUID, principal: Principal, q: str, limit: int = 10
) -> list[Contact]:
    """Contacts whose name contains ``q``, visible to the caller and not yet in the list."""
    s = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    stmt = (
        select(Contact)
        .where(
            Contact.merged_into_id.is_(None),
            Contact.name.ilike(f"%{s}%", escape="\\"),
            Contact.id.not_in(select(SegmentMember.contact_id).where(SegmentMember.segment_id == segment_id)),
            visible_owner_clause(Contact.owner_id, principal, "contacts"),
        )
        .order_by(Contact.name)
        .limit(limit)
    )
    return list((await session.execute(stmt)).scalars())


async def builder_options(session: AsyncSession) -> dict[str, Any]:
    """What the rule builder offers: tags, custom fields of contacts and accounts, other
    segments and the event names seen so far."""
    from tessera.contacts.models import ContactEvent

    tags = (await session.execute(select(Tag.id, Tag.name).order_by(Tag.name).limit(500))).all()
    fields = (
        await session.execute(
            select(
                FieldDefinition.object_type, FieldDefinition.key, FieldDefinition.label, FieldDefinition.type
            )
        )
    ).all()
    segs = (await session.execute(select(Segment.id, Segment.name).order_by(Segment.name).limit(500))).all()
    events = (
        await session.execute(
            select(ContactEvent.name).group_by(ContactEvent.name).order_by(ContactEvent.name).limit(200)
        )
    ).scalars()
    return {
        "tags": [{"id": str(i), "name": n} for i, n in tags],
        "contact_fields": [
            {"key": f"attributes.{k}", "label": label, "type": t}
            for o, k, label, t in fields
            if o == "contact"
        ],
        "account_fields": [
            {"key": f"attributes.{k}", "label": label, "type": t}
            for o, k, label, t in fields
            if o == "account"
        ],
        "segments": [{"id": str(i), "name": n} for i, n in segs],
        "events": list(events),
    }


# --- exports --------------------------------------------------------------------------------


async def get_export(session: AsyncSession, job_id: uuid.UUID) -> DataJob:
    job = await imports_svc.get_job(session, job_id)
    if job.kind != "export":
        raise ImportNotFound(field="export_id")
    return job


def set_export_format(job: DataJob, fmt: str, requested_by: uuid.UUID | None) -> None:
    job.options = {**job.options, "format": fmt, "requested_by": str(requested_by) if requested_by else None}


def _link_mac(job_id: uuid.UUID, user_id: uuid.UUID | None, expires: int, nonce: str) -> str:
    return blind_index("export_link", f"{job_id}:{user_id}:{expires}:{nonce}")


def sign_download(job_id: uuid.UUID, user_id: uuid.UUID | None, now: dt.datetime | None = None) -> str:
    """A token for ``/exports/{id}/file?token=…``: valid for ``LINK_TTL``, for this user only."""
    expires = int(((now or utcnow()) + LINK_TTL).timestamp())
    nonce = secrets.token_hex(4)
    return f"{expires}.{nonce}.{_link_mac(job_id, user_id, expires, nonce)}"


def check_download(
    token: str, job_id: uuid.UUID, user_id: uuid.UUID | None, now: dt.datetime | None = None
) -> None:
    parts = token.split(".")
    if len(parts) != 3 or not parts[0].isdigit():
        raise ExportLinkInvalid(field="token")
    expires, nonce, mac = int(parts[0]), parts[1], parts[2]
    if not secrets.compare_digest(mac, _link_mac(job_id, user_id, expires, nonce)):
        raise ExportLinkInvalid(field="token")
    if (now or utcnow()).timestamp() > expires:
        raise ExportLinkExpired(field="token")


def link_expires_at(token: str) -> dt.datetime | None:
    head = token.split(".", 1)[0]
    return dt.datetime.fromtimestamp(int(head), tz=dt.UTC) if head.isdigit() else None


def export_bytes(job: DataJob) -> tuple[bytes, str, str]:
    """(content, media type, file extension) of a finished export in its requested format."""
    raw = imports_svc.error_file(job)
    if job.options.get("format") != "xlsx":
        return raw, "text/csv; charset=utf-8", "csv"
    import openpyxl

    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet("contacts")
    for row in csv.reader(io.StringIO(raw.decode("utf-8-sig"))):
        ws.append(row)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue(), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "xlsx"


# --- data quality ---------------------------------------------------------------------------


async def _quality_snapshot(session: AsyncSession) -> DataJob | None:
    stmt = (
        select(DataJob)
        .where(DataJob.kind == "quality", DataJob.status == "done")
        .order_by(DataJob.finished_at.desc())
        .limit(1)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def recompute_quality(session: AsyncSession) -> tuple[QualityOut, dt.datetime]:
    """Compute the figures now with the data-quality service and keep them as the snapshot."""
    figures = await imports_svc.quality(session)
    now = utcnow()
    job = await _quality_snapshot(session)
    if job is None:
        job = DataJob(kind="quality", status="done")
        session.add(job)
    job.options = {"figures": figures.model_dump()}
    job.total_rows = job.rows_done = figures.contacts
    job.started_at = job.finished_at = now
    await session.flush()
    await audit.record(
        session, "contact_quality.recompute", "contact_quality", job.id, after={"contacts": figures.contacts}
    )
    return figures, now


async def quality_figures(session: AsyncSession) -> tuple[QualityOut, dt.datetime]:
    """The latest snapshot; computed once if there is none yet."""
    job = await _quality_snapshot(session)
    if job is None or not job.options.get("figures") or job.finished_at is None:
        return await recompute_quality(session)
    return QualityOut.model_validate(job.options["figures"]), job.finished_at
