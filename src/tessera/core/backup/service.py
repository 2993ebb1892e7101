"""Backups (PLT-8), per-tenant export and per-tenant deletion.

A backup is one file ``tessera-<UTC stamp>.tbk`` (the database snapshot, zstd-compressed, then
AES-GCM-encrypted with the master key) plus ``<name>.manifest.json`` next to it (created_at,
database kind, row counts per table, size, SHA-256 of the file). SQLite snapshots use the
online backup API; PostgreSQL uses ``pg_dump -Fc`` inside an exported snapshot, so the row
counts in the manifest describe exactly the dumped data. The whole file is held in memory
while compressing and encrypting: fine for the embedded mode's sizes; large PostgreSQL
installations should rely on the database's own physical backups as well.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import datetime as dt
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import zstandard
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import create_engine, delete, func, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.core import context
from tessera.core.audit import service as audit
from tessera.core.crypto.keyring import MasterKeys
from tessera.core.db.base import TENANT_OWNED_TABLES, Base, utcnow
from tessera.core.http.errors import Conflict, InvalidInput, NotFound
from tessera.settings import Settings

SUFFIX = ".tbk"
MAGIC = b"TBK1"
KEEP_DAILY = int(os.environ.get("TESSERA_BACKUP_KEEP_DAILY", "7"))
KEEP_WEEKLY = int(os.environ.get("TESSERA_BACKUP_KEEP_WEEKLY", "4"))
DELETION_GRACE_DAYS = int(os.environ.get("TESSERA_TENANT_DELETION_GRACE_DAYS", "30"))
# Never exported: wrapped key material and credential hashes.
EXPORT_SKIP_TABLES = frozenset({"tenant_keys", "audit_heads", "usage_counters"})
_SECRET_COLUMNS = ("password_hash", "secret_hash", "totp_secret", "recovery", "token_hash")


class BackupError(Conflict):
    """The backup cannot be used."""

    code = "backup.invalid"


class BackupNotFound(NotFound):
    """No backup matches."""

    code = "backup.not_found"


class ChecksumMismatch(BackupError):
    """The backup file does not match its manifest's checksum (corrupt or tampered)."""

    code = "backup.checksum_mismatch"


@dataclass
class RestoreReport:
    backup: str
    target: str
    created_at: str
    expected_rows: dict[str, int]
    restored_rows: dict[str, int]
    audit: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def backups_dir(settings: Settings) -> Path:
    d = settings.data_dir / "backups"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _masters(settings: Settings) -> MasterKeys:
    env = settings.master_key.get_secret_value() if settings.master_key else None
    return MasterKeys.load(settings.keys_dir, env)


def _sync_url(url: str) -> str:
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def _libpq_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _sqlite_path(url: str) -> Path:
    db = make_url(url).database
    if not db:
        raise BackupError("in-memory SQLite databases cannot be backed up")
    return Path(db)


def _count_rows(conn: Any) -> dict[str, int]:
    names = sorted(inspect(conn).get_table_names())
    return {t: int(conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar_one()) for t in names}


def _seal(masters: MasterKeys, name: str, raw: bytes) -> bytes:
    compressed = zstandard.ZstdCompressor(level=10, threads=-1).compress(raw)
    nonce = os.urandom(12)
    kid = masters.current_id.encode()
    ct = AESGCM(masters.current).encrypt(nonce, compressed, b"tessera-backup|" + name.encode())
    return MAGIC + bytes([len(kid)]) + kid + nonce + ct


def _unseal(masters: MasterKeys, name: str, blob: bytes) -> bytes:
    if blob[:4] != MAGIC:
        raise BackupError("not a Tessera backup file")
    n = blob[4]
    kid = blob[5 : 5 + n].decode()
    nonce = blob[5 + n : 17 + n]
    compressed = AESGCM(masters.by_id(kid)).decrypt(nonce, blob[17 + n :], b"tessera-backup|" + name.encode())
    return zstandard.ZstdDecompressor().decompress(compressed, max_output_size=1 << 40)


def _snapshot_sqlite(settings: Settings) -> tuple[bytes, dict[str, int], str | None]:
    src = sqlite3.connect(_sqlite_path(settings.effective_migration_url))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "snapshot.db"
        dst = sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        eng = create_engine(f"sqlite:///{copy}")
        with eng.connect() as conn:
            counts = _count_rows(conn)
            rev = _revision(conn)
        eng.dispose()
        return copy.read_bytes(), counts, rev


def _revision(conn: Any) -> str | None:
    try:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()  # type: ignore[no-any-return]
    except Exception:
        return None


def _snapshot_postgres(settings: Settings) -> tuple[bytes, dict[str, int], str | None]:
    url = _sync_url(settings.effective_migration_url)
    eng = create_engine(url)
    try:
        with eng.connect() as conn:
            conn.exec_driver_sql("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            # The dump must see every tenant's rows: the backup role needs BYPASSRLS.
            conn.exec_driver_sql("SET LOCAL row_security = off")
            snapshot = conn.exec_driver_sql("SELECT pg_export_snapshot()").scalar_one()
            counts = _count_rows(conn)
            rev = _revision(conn)
            with tempfile.TemporaryDirectory() as tmp:
                out = Path(tmp) / "dump.pgc"
                proc = subprocess.run(
                    ["pg_dump", "-Fc", f"--snapshot={snapshot}", "-f", str(out), "-d", _libpq_url(url)],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode != 0:
                    raise BackupError(f"pg_dump failed: {proc.stderr.strip()[:500]}")
                data = out.read_bytes()
            conn.exec_driver_sql("COMMIT")
    finally:
        eng.dispose()
    return data, counts, rev


def create_backup(settings: Settings, *, at: dt.datetime | None = None) -> Path:
    """Snapshot the database into the backups directory; returns the backup file's path.

    ``at`` overrides the recorded creation time (tests, imports of older backups).
    """
    created = (at or utcnow()).astimezone(dt.UTC)
    kind = "postgresql" if settings.effective_migration_url.startswith("postgresql") else "sqlite"
    raw, counts, rev = _snapshot_postgres(settings) if kind == "postgresql" else _snapshot_sqlite(settings)
    name = f"tessera-{created.strftime('%Y%m%dT%H%M%S%fZ')}{SUFFIX}"
    masters = _masters(settings)
    sealed = _seal(masters, name, raw)
    d = backups_dir(settings)
    path = d / name
    tmp = path.with_suffix(".partial")
    tmp.write_bytes(sealed)
    os.replace(tmp, path)
    manifest = {
        "name": name,
        "created_at": created.isoformat(),
        "db_kind": kind,
        "alembic_revision": rev,
        "tables": counts,
        "raw_size": len(raw),
        "size": len(sealed),
        "sha256": hashlib.sha256(sealed).hexdigest(),
        "compression": "zstd",
        "cipher": "AES-256-GCM",
        "master_key_id": masters.current_id,
    }
    (d / f"{name}.manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return path


def list_backups(settings: Settings) -> list[dict[str, Any]]:
    """Manifests of every backup, oldest first."""
    out = []
    for m in backups_dir(settings).glob(f"*{SUFFIX}.manifest.json"):
        data = json.loads(m.read_text())
        data["path"] = str(m.parent / data["name"])
        out.append(data)
    return sorted(out, key=lambda d: d["created_at"])


def _choose(settings: Settings, at: dt.date) -> dict[str, Any]:
    candidates = [
        b for b in list_backups(settings) if dt.datetime.fromisoformat(b["created_at"]).date() <= at
    ]
    if not candidates:
        raise BackupNotFound(f"no backup taken on or before {at.isoformat()}", field="at")
    return candidates[-1]


def verify_file(manifest: dict[str, Any]) -> bytes:
    path = Path(manifest["path"])
    if not path.exists():
        raise BackupNotFound(f"{path.name} is missing")
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != manifest["sha256"] or len(blob) != manifest["size"]:
        raise ChecksumMismatch(f"{path.name} does not match its manifest")
    return blob


def restore_backup(settings: Settings, at: dt.date, target: str) -> RestoreReport:
    """Restore the newest backup taken on or before ``at`` into ``target`` and verify it.

    ``target``: for SQLite a file path that must not exist yet; for PostgreSQL the name of a
    database to create (or a full URL). Verification: checksum before anything is written,
    then row counts against the manifest and every tenant's audit chain.
    """
    manifest = _choose(settings, at)
    blob = verify_file(manifest)
    raw = _unseal(_masters(settings), manifest["name"], blob)
    if manifest["db_kind"] == "sqlite":
        path = Path(target.removeprefix("sqlite+aiosqlite:///").removeprefix("sqlite:///"))
        if path.exists():
            raise InvalidInput(f"{path} exists; restore into a new file", field="target")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        sync_url, async_url = f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"
    else:
        sync_url = _create_pg_database(settings, target)
        with tempfile.TemporaryDirectory() as tmp:
            dump = Path(tmp) / "dump.pgc"
            dump.write_bytes(raw)
            proc = subprocess.run(
                ["pg_restore", "--exit-on-error", "-d", _libpq_url(sync_url), str(dump)],
                capture_output=True,
                text=True,
                check=False,
            )
            if proc.returncode != 0:
                raise BackupError(f"pg_restore failed: {proc.stderr.strip()[:500]}")
        async_url = sync_url
    eng = create_engine(sync_url)
    with eng.connect() as conn:
        if manifest["db_kind"] == "postgresql":
            conn.exec_driver_sql("SET row_security = off")
        restored = _count_rows(conn)
        tenants = (
            [r[0] for r in conn.execute(text("SELECT id FROM tenants"))] if "tenants" in restored else []
        )
    eng.dispose()
    report = RestoreReport(manifest["name"], target, manifest["created_at"], manifest["tables"], restored)
    for t, n in manifest["tables"].items():
        if restored.get(t) != n:
            report.problems.append(f"{t}: {restored.get(t)} rows, manifest says {n}")
    # A thread of its own, so that this works from the CLI and from inside an event loop alike.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, _verify_audit(async_url, tenants, report)).result()
    return report


async def _verify_audit(url: str, tenants: list[Any], report: RestoreReport) -> None:
    from tessera.core.db.engine import Database

    if url.startswith("sqlite:///"):
        url = url.replace("sqlite:///", "sqlite+aiosqlite:///", 1)
    db = Database(url, pool_size=2)
    try:
        for tid in tenants:
            tid = tid if isinstance(tid, uuid.UUID) else uuid.UUID(str(tid))
            with context.tenant_scope(tid):
                async with db.sessionmaker() as s:
                    result = await audit.verify(s)
            report.audit[str(tid)] = result.checked
            if not result.ok:
                report.problems.append(
                    f"audit chain of tenant {tid}: {result.reason} at seq {result.first_bad_seq}"
                )
    finally:
        await db.dispose()


def _create_pg_database(settings: Settings, target: str) -> str:
    owner = make_url(_sync_url(settings.effective_migration_url))
    if target.startswith("postgresql"):
        url = make_url(_sync_url(target))
        name = url.database or ""
    else:
        name, url = target, owner.set(database=target)
    if not name.replace("_", "").isalnum():
        raise InvalidInput("a database name is letters, digits and underscores", field="target")
    eng = create_engine(owner.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with eng.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).first()
        if exists:
            raise InvalidInput(f"database {name} exists; restore into a new database", field="target")
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    eng.dispose()
    return url.render_as_string(hide_password=False)


def prune_backups(
    settings: Settings, *, keep_daily: int = KEEP_DAILY, keep_weekly: int = KEEP_WEEKLY
) -> list[str]:
    """Keep the newest backup of each of the last ``keep_daily`` days and of each of the last
    ``keep_weekly`` ISO weeks; delete the rest. Returns the deleted names."""
    backups = list(reversed(list_backups(settings)))  # newest first
    keep: set[str] = set()
    days: list[dt.date] = []
    weeks: list[tuple[int, int]] = []
    for b in backups:
        d = dt.datetime.fromisoformat(b["created_at"]).date()
        if d not in days and len(days) < keep_daily:
            days.append(d)
            keep.add(b["name"])
        w = d.isocalendar()[:2]
        if w not in weeks and len(weeks) < keep_weekly:
            weeks.append(w)
            keep.add(b["name"])
    deleted = []
    for b in backups:
        if b["name"] not in keep:
            Path(b["path"]).unlink(missing_ok=True)
            Path(b["path"] + ".manifest.json").unlink(missing_ok=True)
            deleted.append(b["name"])
    return deleted


# --- per-tenant export ----------------------------------------------------------------------


def _jsonable(v: Any) -> Any:
    if isinstance(v, uuid.UUID):
        return str(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    if isinstance(v, bytes):
        return base64.b64encode(v).decode()
    return v


def _tenant_models() -> list[type[Any]]:
    out = []
    for mapper in Base.registry.mappers:
        cls = mapper.class_
        name = getattr(cls, "__tablename__", None)
        if name in TENANT_OWNED_TABLES and name not in EXPORT_SKIP_TABLES:
            out.append(cls)
    return sorted(out, key=lambda c: c.__tablename__)


async def export_tenant(
    session: AsyncSession, out_dir: Path, export_id: uuid.UUID
) -> tuple[Path, dict[str, int]]:
    """Every row of the tenant in scope as ``<table>.jsonl`` files in a zip (personal data
    decrypted, credential hashes left out). The guard scopes every query to the tenant."""
    from tessera.core.tenancy.models import Tenant

    tid = context.current_tenant_id()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{export_id}.zip"
    counts: dict[str, int] = {}
    tmp = path.with_suffix(".partial")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        tenant = await session.get(Tenant, tid)
        cols = [c.key for c in inspect(Tenant).column_attrs]
        zf.writestr("tenants.jsonl", orjson.dumps({c: _jsonable(getattr(tenant, c)) for c in cols}) + b"\n")
        counts["tenants"] = 1
        for model in _tenant_models():
            attrs = [
                c.key for c in inspect(model).column_attrs if not any(m in c.key for m in _SECRET_COLUMNS)
            ]
            buf = io.BytesIO()
            n = 0
            result = await session.stream(select(model).execution_options(yield_per=500))
            async for obj in result.scalars():
                buf.write(orjson.dumps({a: _jsonable(getattr(obj, a)) for a in attrs}) + b"\n")
                n += 1
            session.expunge_all()
            zf.writestr(f"{model.__tablename__}.jsonl", buf.getvalue())
            counts[model.__tablename__] = n
        zf.writestr(
            "manifest.json",
            json.dumps(
                {"tenant_id": str(tid), "created_at": utcnow().isoformat(), "tables": counts}, indent=2
            ),
        )
    os.replace(tmp, path)
    return path, counts


def exports_dir(settings: Settings, tenant_id: uuid.UUID) -> Path:
    return settings.data_dir / "exports" / str(tenant_id)


async def run_export(session: AsyncSession, settings: Settings, export_id: uuid.UUID) -> None:
    """Produce the zip of a requested export (job handler and inline fallback)."""
    from tessera.core.backup.models import TenantExport

    exp = (
        await session.execute(select(TenantExport).where(TenantExport.id == export_id))
    ).scalar_one_or_none()
    if exp is None or exp.status == "done":
        return
    tid = exp.tenant_id
    path, counts = await export_tenant(session, exports_dir(settings, tid), export_id)
    exp = (await session.execute(select(TenantExport).where(TenantExport.id == export_id))).scalar_one()
    exp.status, exp.file_name, exp.size, exp.row_counts = "done", path.name, path.stat().st_size, counts
    exp.finished_at = utcnow()
    await session.flush()


# --- per-tenant deletion --------------------------------------------------------------------


async def schedule_deletion(
    session: AsyncSession, tenant_id: uuid.UUID, *, grace_days: int, reason: str, requested_by: str
) -> Any:
    """Terminate the tenant now (its users and keys are refused) and delete it after the grace."""
    from tessera.core.backup.models import TenantDeletion
    from tessera.core.db.session import switch_tenant
    from tessera.core.tenancy.service import get_tenant

    tenant = await get_tenant(session, tenant_id)
    pending = (
        await session.execute(
            select(TenantDeletion).where(
                TenantDeletion.tenant_id == tenant_id, TenantDeletion.status == "scheduled"
            )
        )
    ).scalar_one_or_none()
    if pending is not None:
        raise Conflict("a deletion is already scheduled for this tenant")
    when = utcnow() + dt.timedelta(days=grace_days)
    d = TenantDeletion(
        tenant_id=tenant.id,
        tenant_slug=tenant.slug,
        tenant_name=tenant.name,
        requested_by=requested_by,
        reason=reason,
        delete_after=when,
    )
    session.add(d)
    tenant.status, tenant.terminate_after = "terminated", when
    await session.flush()
    actor = context.current_actor()
    await switch_tenant(session, tenant.id)
    context.bind(tenant.id, actor)
    await audit.record(
        session,
        "tenant.deletion_scheduled",
        "tenant",
        tenant.id,
        after={"delete_after": when.isoformat(), "reason": reason},
    )
    return d


async def cancel_deletion(session: AsyncSession, tenant_id: uuid.UUID, cancelled_by: str) -> Any:
    from tessera.core.backup.models import TenantDeletion
    from tessera.core.db.session import switch_tenant
    from tessera.core.tenancy.service import get_tenant

    d = (
        await session.execute(
            select(TenantDeletion).where(
                TenantDeletion.tenant_id == tenant_id, TenantDeletion.status == "scheduled"
            )
        )
    ).scalar_one_or_none()
    if d is None:
        raise NotFound("no deletion is scheduled for this tenant")
    tenant = await get_tenant(session, tenant_id)
    d.status, d.cancelled_by = "cancelled", cancelled_by
    tenant.status, tenant.terminate_after = "active", None
    await session.flush()
    actor = context.current_actor()
    await switch_tenant(session, tenant.id)
    context.bind(tenant.id, actor)
    await audit.record(session, "tenant.deletion_cancelled", "tenant", tenant.id)
    return d


async def run_due_deletions(
    session: AsyncSession, settings: Settings | None = None, now: dt.datetime | None = None
) -> list[uuid.UUID]:
    """Delete every tenant whose grace period is over (platform session). Row counts go into the
    surviving ``tenant_deletions`` row; the tenant's rows go with it through ON DELETE CASCADE."""
    from tessera.core.backup.models import TenantDeletion
    from tessera.core.db.session import switch_tenant
    from tessera.core.tenancy.models import Tenant

    now = now or utcnow()
    due = list(
        (
            await session.execute(
                select(TenantDeletion).where(
                    TenantDeletion.status == "scheduled", TenantDeletion.delete_after <= now
                )
            )
        ).scalars()
    )
    done = []
    for d in due:
        await switch_tenant(session, d.tenant_id)
        counts: dict[str, int] = {}
        for model in _tenant_models():
            n = int((await session.execute(select(func.count()).select_from(model))).scalar_one())
            if n:
                counts[model.__tablename__] = n
        await switch_tenant(session, None)
        await session.execute(delete(Tenant).where(Tenant.id == d.tenant_id))
        d.status, d.completed_at, d.row_counts = "done", now, counts
        await session.flush()
        if settings is not None:
            shutil.rmtree(exports_dir(settings, d.tenant_id), ignore_errors=True)
        done.append(d.tenant_id)
    return done
