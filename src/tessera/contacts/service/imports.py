"""Import and export jobs, bulk upsert and data-quality figures."""

from __future__ import annotations

import asyncio
import csv
import io
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts import events, import_bulk, importer
from tessera.contacts.errors import ImportNotFound, ImportStateError
from tessera.contacts.models import Contact, ContactIdentity, DataJob
from tessera.contacts.repository import ContactRepository, DataJobRepository
from tessera.contacts.schemas import (
    BulkRecordResult,
    BulkUpsertResult,
    ContactCreate,
    DryRunOut,
    ImportOut,
    QualityOut,
    RowProblem,
)
from tessera.contacts.service.contacts import create_contact, tenant_region
from tessera.core import context
from tessera.core.access.masking import MASKERS
from tessera.core.access.principal import Principal
from tessera.core.audit import service as audit
from tessera.core.crypto.keyring import get_keyring
from tessera.core.db.base import utcnow
from tessera.core.http.errors import InvalidInput, PayloadTooLarge, TesseraError
from tessera.settings import get_settings

MAX_UPLOAD = 200 * 1024 * 1024


def _dir() -> Path:
    d = get_settings().files_dir / "contacts" / str(context.current_tenant_id())
    d.mkdir(parents=True, exist_ok=True)
    return d


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> DataJob:
    job = await DataJobRepository(session).get(job_id)
    if job is None:
        raise ImportNotFound(field="import_id")
    return job


def job_out(job: DataJob, headers: list[str] | None = None) -> ImportOut:
    out = ImportOut.model_validate(job)
    if job.started_at and job.rows_done:
        end = job.finished_at or utcnow()
        secs = max((end - job.started_at).total_seconds(), 1e-6)
        out.rows_per_second = round(job.rows_done / secs, 1)
        if job.status == "running":
            out.eta_seconds = round((job.total_rows - job.rows_done) / out.rows_per_second, 1)
    out.headers = headers or list(job.mapping)
    return out


async def upload(session: AsyncSession, filename: str, raw: bytes) -> DataJob:
    if len(raw) > MAX_UPLOAD:
        raise PayloadTooLarge("the file is larger than 200 MB", field="file")
    info = importer.scan(raw, filename)
    defs = await importer.field_defs(session)
    job = DataJob(
        kind="import",
        status="uploaded",
        filename=filename[:300],
        encoding=info.encoding,
        mapping=importer.auto_mapping(info.headers, defs),
        total_rows=info.total_rows,
        options={"headers": info.headers},
    )
    session.add(job)
    await session.flush()
    path = _dir() / f"{job.id}.upload"
    path.write_bytes(raw)
    job.file_path = str(path)
    await audit.record(
        session,
        "contact_import.upload",
        "contact_import",
        job.id,
        after={"filename": filename, "rows": info.total_rows},
    )
    return job


def _chunks(
    job: DataJob, size: int = importer.CHUNK, *, ramped: bool = False
) -> tuple[list[str], Iterator[importer.Chunk]]:
    if not job.file_path or not Path(job.file_path).exists():
        raise ImportStateError("the uploaded file is gone", field="import_id")
    sizes = importer.ramped_sizes(size, job.total_rows) if ramped else None
    return importer.read_chunks(Path(job.file_path), job.filename or "", job.encoding, size, sizes)


async def set_mapping(session: AsyncSession, job_id: uuid.UUID, mapping: dict[str, str]) -> DataJob:
    job = await get_job(session, job_id)
    if job.status not in ("uploaded", "validated"):
        raise ImportStateError(f"the import is {job.status}", field="import_id")
    headers = job.options.get("headers", [])
    full = {**job.mapping, **mapping}
    importer.check_mapping(full, headers, await importer.field_defs(session))
    job.mapping = full
    job.status = "uploaded"
    return job


async def _validator(session: AsyncSession, job: DataJob, headers: list[str]) -> importer.RowValidator:
    defs = await importer.field_defs(session)
    importer.check_mapping(job.mapping, headers, defs)
    region = await tenant_region(session)
    sealer = get_keyring().sealer(context.current_tenant_id())
    return importer.RowValidator(headers, job.mapping, defs, region, sealer)


async def dry_run(session: AsyncSession, job_id: uuid.UUID, limit: int = 1000) -> DryRunOut:
    """Validate every row without writing: counts and the first ``limit`` problems by row."""
    job = await get_job(session, job_id)
    headers, chunks = _chunks(job)
    validator = await _validator(session, job, headers)
    first_row: dict[tuple[str, str], int] = {}  # identity → first row having it (whole file)
    total = bad = dups = 0
    shown: list[RowProblem] = []
    for rows in chunks:
        prepared = await asyncio.to_thread(importer.prepare_chunk, validator, rows, seal=False)
        notes = list(prepared.duplicates)
        for r in prepared.records:
            owner = next((first_row[(k, i)] for k, _, i in r.idents if (k, i) in first_row), None)
            if owner is not None:
                notes.append(importer._dup_note(r, f"same identity as row {owner}; merged into it"))
            for k, _, i in r.idents:
                first_row.setdefault((k, i), r.row)
        total += len(rows)
        bad += len({p.row for p in prepared.problems})
        dups += len(notes)
        if len(shown) < limit:
            for p in sorted(prepared.problems + notes, key=lambda p: p.row)[: limit - len(shown)]:
                shown.append(RowProblem(**p.__dict__))
    if job.status == "uploaded":
        job.status = "validated"
    return DryRunOut(
        total_rows=total,
        valid_rows=total - bad,
        invalid_rows=bad,
        duplicates_in_file=dups,
        problems=shown,
    )


async def start_import(session: AsyncSession, job_id: uuid.UUID) -> DataJob:
    job = await get_job(session, job_id)
    if job.status not in ("uploaded", "validated"):
        raise ImportStateError(f"the import is {job.status}", field="import_id")
    importer.check_mapping(job.mapping, job.options.get("headers", []), await importer.field_defs(session))
    job.status = "queued"
    await audit.record(
        session, "contact_import.start", "contact_import", job.id, after={"mapping": job.mapping}
    )
    from tessera.contacts.tasks import enqueue_import

    await enqueue_import(session, job.id)
    return job


async def cancel(session: AsyncSession, job_id: uuid.UUID) -> DataJob:
    job = await get_job(session, job_id)
    if job.status in ("done", "failed", "cancelled"):
        raise ImportStateError(f"the import is already {job.status}", field="import_id")
    job.cancel_requested = True
    if job.status in ("uploaded", "validated", "queued"):
        job.status = "cancelled"
        job.finished_at = utcnow()
    await audit.record(
        session, "contact_import.cancel", "contact_import", job.id, changes={"status": job.status}
    )
    return job


async def run_import(tenant_id: uuid.UUID, job_id: uuid.UUID, *, chunk_size: int = importer.CHUNK) -> None:
    """The background import, streamed in chunks: one transaction per chunk so progress is
    visible and a cancel takes effect between chunks. The next chunk is parsed and validated in
    a worker thread while the current one is written. Resumable: it starts after ``rows_done``."""
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant_id):
        async with unit_of_work() as s:
            job = await get_job(s, job_id)
            if job.status not in ("queued", "running"):
                return
            # PostgreSQL: the chunk's statements are built in the worker thread too (import_bulk),
            # and two chunks are written at a time: smaller chunks at both ends of the file
            bulk = s.get_bind().dialect.name == "postgresql"
            headers, chunks = _chunks(job, chunk_size, ramped=bulk)
            validator = await _validator(s, job, headers)
            job.status = "running"
            job.started_at = job.started_at or utcnow()
            skip = job.rows_done
            # A tenant without any identity yet (a first import): lookups are needed only for
            # what this run writes (a concurrent writer's identity fails the chunk on the unique
            # index, and the retry looks everything up again).
            fresh = not await ContactRepository(s).has_identities()
        errors = importer.ErrorFile(_dir() / f"{job_id}.errors.csv", headers, append=skip > 0)
        run = importer.ImportRun()
        if fresh:
            run.written = importer.IdentityFilter.sized(2 * max(job.total_rows, 1))
        seen = run.written

        previous: frozenset[int] = frozenset()  # the identities of the chunk prepared before

        def next_chunk() -> list[importer.PreparedChunk]:
            """The next prepared chunk in a list (empty at the end) that the caller empties: the
            futures carrying it from the thread are in reference cycles, which would keep every
            chunk (its rows, records…) alive until a cyclic collection has to walk it."""
            nonlocal previous
            for rows in chunks:
                if rows[-1][0] - 1 <= skip:
                    continue
                if bulk:
                    chunk = import_bulk.prepare_bulk(validator, rows, seen, run.source, previous)
                    previous = chunk.keys
                    return [chunk]
                return [importer.prepare_chunk(validator, rows)]
            return []

        last_row = skip + 1
        # On PostgreSQL two chunks are written at a time, on two connections: a chunk's new rows
        # go in while the chunk before is still being written, and the rest of it waits for that
        # chunk's commit (import_bulk.write_bulk), so commits stay in file order.
        writing: asyncio.Future[bool] | None = None  # PostgreSQL: the chunk being written
        writing_last = last_row
        with importer.relaxed_gc(), importer.prompt_handoff():
            ahead = asyncio.ensure_future(asyncio.to_thread(next_chunk))
            try:
                while box := await ahead:
                    prepared = box.pop()
                    ahead = asyncio.ensure_future(asyncio.to_thread(next_chunk))
                    if not bulk:
                        if not await _write_chunk(job_id, prepared, run, errors):
                            return
                        last_row = prepared.last_row
                        continue
                    before, before_last = writing, writing_last
                    writing = asyncio.ensure_future(_write_chunk(job_id, prepared, run, errors, after=before))
                    writing_last = prepared.last_row
                    if before is not None:
                        if not await before:
                            return
                        last_row = before_last
                if writing is not None:
                    if not await writing:
                        return
                    last_row = writing_last
            finally:
                for task in (ahead, writing):  # a chunk still writing adds to the error file
                    if task is not None and not task.done():
                        await asyncio.gather(task, return_exceptions=True)
                errors.close()
        async with unit_of_work() as s:
            job = await get_job(s, job_id)
            job.rows_done = max(job.rows_done, last_row - 1)
            job.total_rows = max(job.total_rows, job.rows_done)
            job.status, job.finished_at = "done", utcnow()
            await audit.record(
                s,
                "contact_import.finish",
                "contact_import",
                job.id,
                changes={"created": job.rows_created, "updated": job.rows_updated, "failed": job.rows_failed},
            )
            await events.publish(s, events.IMPORT_FINISHED, {"import_id": str(job.id)})


class _ChunkBeforeCancelled(Exception):
    """The job was cancelled before this chunk committed (the chunk before was not written,
    or cancel was pressed meanwhile): roll this one back."""


async def _write_chunk(
    job_id: uuid.UUID,
    prepared: importer.PreparedChunk,
    run: importer.ImportRun,
    errors: importer.ErrorFile,
    *,
    after: asyncio.Future[bool] | None = None,
) -> bool:
    """Write one chunk and its progress in one transaction; False when the job was cancelled.

    ``after`` is the write of the chunk before, still running: this chunk's new rows go in
    meanwhile, and the rest (see :func:`import_bulk.write_bulk`), its progress and its commit
    wait for it; if that chunk was not written this one is rolled back.

    A concurrent writer may create one of the chunk's identities between the lookup and the
    insert; the chunk is then retried (its lookups see that contact)."""
    from tessera.core.db.session import unit_of_work

    async def chunk_before() -> None:
        if after is not None and not await asyncio.shield(after):
            raise _ChunkBeforeCancelled

    for attempt in range(3):
        try:
            async with unit_of_work() as s:
                job = await get_job(s, job_id)
                if job.cancel_requested:
                    job.status, job.finished_at = "cancelled", utcnow()
                    await chunk_before()
                    return False
                if isinstance(prepared, import_bulk.BulkChunk):
                    res = await import_bulk.write_bulk(s, prepared, run, chunk_before)
                    await s.refresh(job)  # the progress the chunk before committed
                    if job.cancel_requested:  # pressed while this chunk was being written
                        raise _ChunkBeforeCancelled
                else:
                    await chunk_before()
                    res = await importer.write_chunk(s, prepared.records, run)
                job.rows_created += res.created
                job.rows_updated += res.updated
                job.rows_failed += len({p.row for p in prepared.problems})
                job.rows_done = prepared.last_row - 1
                if prepared.problems:
                    job.result_path = str(errors.path)
            errors.add(prepared.rows, prepared.problems)
            return True
        except _ChunkBeforeCancelled:
            async with unit_of_work() as s:
                job = await get_job(s, job_id)
                if job.status != "cancelled":
                    job.status, job.finished_at = "cancelled", utcnow()
            return False
        except IntegrityError:
            run.written = None  # another writer is at work: look every identity up from now on
            if attempt == 2:
                raise
    return True


def error_file(job: DataJob) -> bytes:
    if not job.result_path or not Path(job.result_path).exists():
        raise ImportNotFound("this job has no file", field="import_id")
    return Path(job.result_path).read_bytes()


async def bulk_upsert(session: AsyncSession, records: list[ContactCreate]) -> BulkUpsertResult:
    """Upsert by identity, one savepoint per record so one bad record fails alone."""
    results: list[BulkRecordResult] = []
    counts = {"created": 0, "updated": 0, "failed": 0}
    for i, rec in enumerate(records):
        try:
            async with session.begin_nested():
                contact, created = await create_contact(session, rec, on_conflict="merge")
            status = "created" if created else "updated"
            results.append(BulkRecordResult(index=i, status=status, contact_id=contact.id))
        except TesseraError as exc:
            status = "failed"
            results.append(
                BulkRecordResult(
                    index=i,
                    status="failed",
                    error={"code": exc.code, "message": exc.message, "field": exc.field},
                )
            )
        counts[status] += 1
    return BulkUpsertResult(results=results, **counts)


EXPORT_COLUMNS = ("id", "name", "phone", "email", "city", "lifecycle_stage", "source", "created_at")


async def start_export(
    session: AsyncSession, filters: dict[str, str], segment_id: uuid.UUID | None
) -> DataJob:
    from tessera.core.access.masking import caller_sees_pii

    caller = context.current_principal()
    viewer = None
    if caller is not None:  # the job applies the requester's record visibility, as of now
        viewer = {
            "user_id": str(caller.user_id) if caller.user_id else None,
            "role_key": caller.role_key,
            "visibility": dict(caller.visibility),
            "department_path": caller.department_path,
            "team_ids": [str(t) for t in caller.team_ids],
        }
    job = DataJob(
        kind="export",
        status="queued",
        options={
            "filters": filters,
            "segment_id": str(segment_id) if segment_id else None,
            "unmasked": caller_sees_pii(),
            "viewer": viewer,
        },
    )
    session.add(job)
    await session.flush()
    await audit.record(session, "contact_export.start", "contact_export", job.id, after=job.options)
    from tessera.contacts.tasks import enqueue_export

    await enqueue_export(session, job.id)
    return job


def _viewer_principal(viewer: dict[str, Any]) -> Principal:
    """The requester of an export as recorded when it was started (visibility only)."""
    user_id = uuid.UUID(viewer["user_id"]) if viewer.get("user_id") else None
    return Principal(
        tenant_id=context.current_tenant_id(),
        actor=context.Actor("user" if user_id else "api_key", user_id),
        role_key=str(viewer.get("role_key") or ""),
        permissions=frozenset(),
        visibility=dict(viewer.get("visibility") or {}),
        user_id=user_id,
        department_path=viewer.get("department_path"),
        team_ids=frozenset(uuid.UUID(t) for t in viewer.get("team_ids") or []),
    )


async def run_export(session: AsyncSession, job_id: uuid.UUID, principal: Any = None) -> DataJob:
    """Write the CSV; phones/emails are masked unless the requesting principal may see them."""
    from tessera.contacts.models import SegmentMember
    from tessera.contacts.repository import CONTACT_FILTERS, ContactRepository
    from tessera.core.http.listing import ListQuery, apply_listing

    job = await get_job(session, job_id)
    if principal is None and job.options.get("viewer"):
        principal = _viewer_principal(job.options["viewer"])
    job.status, job.started_at = "running", utcnow()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(EXPORT_COLUMNS)
    params = {k: v for k, v in (job.options.get("filters") or {}).items() if k not in ("limit", "cursor")}
    cursor: str | None = None
    total = 0
    while True:
        q = ListQuery.from_params(
            {**params, "limit": "200", **({"cursor": cursor} if cursor else {})}, CONTACT_FILTERS
        )
        stmt = select(Contact).where(Contact.merged_into_id.is_(None))
        if job.options.get("segment_id"):
            stmt = stmt.where(
                Contact.id.in_(
                    select(SegmentMember.contact_id).where(
                        SegmentMember.segment_id == uuid.UUID(job.options["segment_id"])
                    )
                )
            )
        if principal is not None:
            from tessera.core.access.visibility import visible_owner_clause

            stmt = stmt.where(visible_owner_clause(Contact.owner_id, principal, "contacts"))
        rows = list((await session.execute(apply_listing(stmt, q, CONTACT_FILTERS))).scalars())
        page, more = rows[:200], len(rows) > 200
        idents = await ContactRepository(session).identities([c.id for c in page])
        for c in page:
            mine = idents.get(c.id, [])
            phone = next((i.value for i in mine if i.kind == "phone" and i.is_primary), None)
            email = next((i.value for i in mine if i.kind == "email" and i.is_primary), None)
            if not job.options.get("unmasked"):
                phone = MASKERS["phone"](phone) if phone else None
                email = MASKERS["email"](email) if email else None
            w.writerow(
                [
                    c.id,
                    c.name,
                    phone or "",
                    email or "",
                    c.city or "",
                    c.lifecycle_stage,
                    c.source or "",
                    c.created_at.isoformat(),
                ]
            )
        total += len(page)
        if not more:
            break
        from tessera.core.http.listing import page_of

        _, cursor = page_of(rows, q, CONTACT_FILTERS)
    path = _dir() / f"{job.id}.export.csv"
    path.write_bytes(("\ufeff" + buf.getvalue()).encode("utf-8"))
    job.result_path, job.total_rows, job.rows_done = str(path), total, total
    job.status, job.finished_at = "done", utcnow()
    return job


async def quality(session: AsyncSession) -> QualityOut:
    """Completeness per field, invalid phones/emails (identities that fail today's rules) and
    the share of contacts that have a strong duplicate (same name and phone tail)."""
    total = int(
        (
            await session.execute(
                select(func.count()).select_from(Contact).where(Contact.merged_into_id.is_(None))
            )
        ).scalar_one()
    )
    if total == 0:
        return QualityOut(contacts=0, completeness={}, invalid_phones=0, invalid_emails=0, duplicate_rate=0.0)
    live = Contact.merged_into_id.is_(None)
    completeness: dict[str, float] = {}
    for f in ("city", "gender", "birthday", "address", "account_id", "owner_id", "language"):
        n = int(
            (
                await session.execute(
                    select(func.count()).select_from(Contact).where(live, getattr(Contact, f).is_not(None))
                )
            ).scalar_one()
        )
        completeness[f] = round(n / total, 4)
    for kind in ("phone", "email"):
        n = int(
            (
                await session.execute(
                    select(func.count(func.distinct(ContactIdentity.contact_id))).where(
                        ContactIdentity.kind == kind
                    )
                )
            ).scalar_one()
        )
        completeness[kind] = round(n / total, 4)
    from tessera.contacts.dedupe import normalize_identity

    region = await tenant_region(session)
    bad = {"phone": 0, "email": 0}
    for kind in ("phone", "email"):
        for (value,) in (
            await session.execute(select(ContactIdentity.value).where(ContactIdentity.kind == kind))
        ).all():
            try:
                normalize_identity(kind, value, region)
            except InvalidInput:
                bad[kind] += 1
    dup_groups = (
        select(Contact.name, Contact.phone_tail, func.count().label("n"))
        .where(live, Contact.phone_tail.is_not(None))
        .group_by(Contact.name, Contact.phone_tail)
        .having(func.count() > 1)
        .subquery()
    )
    dups = int((await session.execute(select(func.coalesce(func.sum(dup_groups.c.n), 0)))).scalar_one())
    return QualityOut(
        contacts=total,
        completeness=completeness,
        invalid_phones=bad["phone"],
        invalid_emails=bad["email"],
        duplicate_rate=round(dups / total, 4),
    )
