"""Every query of the contacts context. The guard adds the tenant filter to each."""

from __future__ import annotations

import struct
import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from psycopg.adapt import Dumper, PyFormat
from psycopg.pq import Format
from sqlalchemy import (
    JSON,
    Boolean,
    String,
    Table,
    Text,
    Uuid,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from tessera.contacts.models import (
    Account,
    Contact,
    ContactConsent,
    ContactEvent,
    ContactIdentity,
    ContactMerge,
    ContactTag,
    DataJob,
    FieldDefinition,
    Segment,
    SegmentMember,
    Tag,
    TagGroup,
)
from tessera.core import context
from tessera.core.crypto.keyring import get_keyring
from tessera.core.crypto.types import EncryptedString
from tessera.core.db.base import Base, UTCDateTime, table_of
from tessera.core.db.repository import TenantRepository


class ContactRepository(TenantRepository[Contact]):
    model = Contact

    def live(self):  # type: ignore[no-untyped-def]
        return select(Contact).where(Contact.merged_into_id.is_(None))

    async def by_index(self, kind: str, value_index: str) -> ContactIdentity | None:
        stmt = select(ContactIdentity).where(
            ContactIdentity.kind == kind, ContactIdentity.value_index == value_index
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def by_identity(self, kind: str, value_index: str) -> Contact | None:
        """The contact owning an identity: one probe of the unique (tenant_id, kind,
        value_index) index joined to the contact by primary key."""
        stmt = (
            select(Contact)
            .join(ContactIdentity, ContactIdentity.contact_id == Contact.id)
            .where(ContactIdentity.kind == kind, ContactIdentity.value_index == value_index)
        )
        return (await self.session.execute(stmt)).scalars().first()

    async def has_identities(self) -> bool:
        """Whether the tenant has any contact identity at all."""
        stmt = select(ContactIdentity.id).limit(1)
        return (await self.session.execute(stmt)).first() is not None

    async def owners_of_indexes(self, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], uuid.UUID]:
        """(kind, value_index) → contact id for those that exist.

        On PostgreSQL the indexes travel as one array and each is probed in the unique index
        (tenant_id, kind, value_index) through a LATERAL … LIMIT 1, a plan that holds whatever
        the table statistics say (a table growing during an import is not analysed yet, and a
        plain ``= ANY`` then turns into a sequential scan per chunk). SQLite: IN, in slices.
        """
        by_kind: dict[str, set[str]] = defaultdict(set)
        for kind, idx in pairs:
            by_kind[kind].add(idx)
        out: dict[tuple[str, str], uuid.UUID] = {}
        postgres = self.session.get_bind().dialect.name == "postgresql"
        for kind, wanted in by_kind.items():
            indexes = list(wanted)
            if postgres:
                probe = (
                    func.unnest(cast(literal(_pg_array_literal(indexes, "text")), ARRAY(String)))
                    .table_valued("v")
                    .render_derived("probe")
                )
                owner = (
                    select(ContactIdentity.contact_id)
                    .where(ContactIdentity.kind == kind, ContactIdentity.value_index == probe.c.v)
                    .limit(1)
                    .lateral("owner")
                )
                stmt = select(probe.c.v, owner.c.contact_id).select_from(probe).join(owner, true())
                for idx, cid in (await self.session.execute(stmt)).all():
                    out[(kind, idx)] = cid
                continue
            for i in range(0, len(indexes), 500):
                stmt = select(ContactIdentity.value_index, ContactIdentity.contact_id).where(
                    ContactIdentity.kind == kind, ContactIdentity.value_index.in_(indexes[i : i + 500])
                )
                for idx, cid in (await self.session.execute(stmt)).all():
                    out[(kind, idx)] = cid
        return out

    async def insert_rows(
        self, model: type[Base], columns: Sequence[str], rows: Sequence[Sequence[Any]]
    ) -> None:
        """Append many rows of a tenant-owned table at once: COPY on PostgreSQL, one
        executemany INSERT elsewhere. ``tenant_id`` is set here from the tenant in scope (these
        rows bypass the ORM guard; row-level security still checks them on PostgreSQL).

        Values: ids as ``uuid.UUID`` or 32-hex strings, aware datetimes, dicts for JSON, and
        encrypted columns already sealed (:meth:`Keyring.sealer`), so they are written as they are.
        """
        if not rows:
            return
        table = table_of(model)
        tid = context.current_tenant_id()
        conn = await self.session.connection()
        if conn.dialect.name == "postgresql":
            bulk = column_insert(model, dict(zip(columns, zip(*rows, strict=True), strict=True)))
            await binary_arrays(conn)
            await conn.exec_driver_sql(bulk.sql(), {**bulk.params, "tenant_id": tid})
            return
        binds: dict[str, Any] = {"tenant_id": bindparam("tenant_id", type_=Uuid())}
        conv: list[Callable[[Any], Any]] = []
        for c in columns:
            ctype = table.c[c].type
            if isinstance(ctype, EncryptedString):
                binds[c] = bindparam(c, type_=Text())  # sealed already
            if isinstance(ctype, Uuid):
                conv.append(lambda v: uuid.UUID(v) if isinstance(v, str) else v)
            else:
                conv.append(lambda v: v)
        many = [
            {"tenant_id": tid, **{c: f(v) for c, f, v in zip(columns, conv, row, strict=True)}}
            for row in rows
        ]
        await self.session.execute(insert(table).values(binds), many)

    async def insert_contacts_with_identities(
        self,
        contact_columns: Sequence[str],
        contacts: Sequence[Sequence[Any]],
        identity_columns: Sequence[str],
        identities: Sequence[Sequence[Any]],
    ) -> None:
        """New contacts and the identities of new and existing contacts, for the bulk import.

        On PostgreSQL the foreign keys of the new rows are checked once per call instead of
        once per row (the row triggers were about half of the database's time): the tenant in
        scope is looked up and locked ``FOR KEY SHARE`` (the lock a per-row check takes, so a
        concurrent delete still waits for this transaction), and when it is there the contacts
        and the identities of those contacts are inserted with ``session_replication_role =
        replica`` (restored right after). The contact rows carry no other reference (checked
        here). Identities of contacts that are not among ``contacts`` (contacts met before that
        get a new identity, usually few) are inserted after that with the usual per-row checks,
        which take their locks by primary key whatever the table statistics say. Row-level
        security and unique indexes are not triggers: they still check every row.

        Needs the SET privilege on that parameter (``GRANT SET ON PARAMETER``, PostgreSQL 15;
        the migration environment grants it to the app role when it can); without it, or when
        the tenant is not there, every INSERT runs with the per-row checks, which then raise.
        """
        id_col = identity_columns.index("contact_id")
        if set(contact_columns) & {"account_id", "owner_id", "merged_into_id", "tenant_id"}:
            raise ValueError("only the tenant may be referenced by bulk-inserted contacts")
        new = {_hex(r[0]) for r in contacts}
        of_new: list[Sequence[Any]] = []
        of_existing: list[Sequence[Any]] = []
        for r in identities:
            (of_new if _hex(r[id_col]) in new else of_existing).append(r)
        trusted = await self._skip_row_checks()
        await self.insert_rows(Contact, contact_columns, contacts)
        await self.insert_rows(ContactIdentity, identity_columns, of_new)
        if trusted:  # after a failure the rollback restores it (and nothing more may run)
            await self._restore_row_checks()
        await self.insert_rows(ContactIdentity, identity_columns, of_existing)

    async def insert_import_chunk(
        self,
        chunk: ImportChunkInsert,
        skip: Collection[int],
        now: Any,
        extra_identities: Sequence[Sequence[Any]],
    ) -> None:
        """A prepared import chunk (PostgreSQL): its new contacts and their identities as two
        INSERT … SELECT FROM unnest(…) built ahead (:func:`import_chunk_insert`), leaving out
        the contacts at the positions in ``skip`` (rows that met an existing contact) and their
        identities, then ``extra_identities`` (``IMPORT_IDENTITY_COLUMNS``) of existing contacts.

        Foreign keys are checked as in :meth:`insert_contacts_with_identities`: every identity
        of the prepared statement points to a contact of the same statement (its ``contact_id``
        column is derived from the contact ids when it is built, and a skipped contact's
        identities are skipped with it), so those rows only need the tenant, locked once; the
        extra identities keep the per-row checks.
        """
        conn = await self.session.connection()
        trusted = await self._skip_row_checks()
        tid = context.current_tenant_id()
        await binary_arrays(conn)
        if len(skip) < chunk.contacts.rows:
            masks: tuple[bytes | None, bytes | None] = (None, None)
            if skip:
                flags = bytearray(chunk.contacts.rows)
                for p in skip:
                    flags[p] = 1
                masks = (bytes(flags), bytes(map(flags.__getitem__, chunk.owner_pos)))
            for bulk, mask in zip((chunk.contacts, chunk.identities), masks, strict=True):
                if not bulk.rows:  # a chunk whose rows have no phone or email: no identities
                    continue
                params: dict[str, Any] = {**bulk.params, "tenant_id": tid, "now": now}
                if mask is not None:
                    params["skip"] = mask
                await conn.exec_driver_sql(bulk.sql(masked=mask is not None), params)
        if trusted:  # after a failure the rollback restores it (and nothing more may run)
            await self._restore_row_checks()
        if extra_identities:
            await self.insert_rows(ContactIdentity, IMPORT_IDENTITY_COLUMNS, extra_identities)

    async def _skip_row_checks(self) -> bool:
        """On PostgreSQL 15+, when this role may set ``session_replication_role`` and the tenant
        in scope exists (now locked FOR KEY SHARE): switch the foreign-key triggers off for
        this transaction and answer True. Otherwise change nothing and answer False."""
        conn = await self.session.connection()
        if conn.dialect.name != "postgresql" or (conn.dialect.server_version_info or (0,)) < (15,):
            return False
        row = (await conn.exec_driver_sql(LOCK_TENANT_SQL, {"t": context.current_tenant_id()})).scalar_one()
        if not row:
            return False
        await conn.exec_driver_sql("SET LOCAL session_replication_role = replica")
        return True

    async def _restore_row_checks(self) -> None:
        conn = await self.session.connection()
        await conn.exec_driver_sql("SET LOCAL session_replication_role = origin")

    async def update_from_import(
        self, rows: Sequence[dict[str, Any]], columns: Sequence[str], *, fill_only: bool
    ) -> None:
        """Bulk UPDATE of contacts by id (``b_id`` and ``b_<column>`` keys, ``b_attributes``).
        ``fill_only`` keeps every non-empty stored value (a later row of the same file only
        fills gaps); otherwise non-empty new values win and empty cells never erase data."""
        if not rows:
            return
        if self.session.get_bind().dialect.name == "postgresql":
            await self._update_from_import_pg(rows, tuple(columns), fill_only)
            return
        table = table_of(Contact)
        now = rows[0].get("b_now")
        # None must bind as SQL NULL (not JSON null) for COALESCE and || to keep stored values.
        attrs = bindparam("b_attributes", type_=_JSON_OR_NULL)
        merged: Any
        if fill_only:
            if self.session.get_bind().dialect.name == "postgresql":
                merged = attrs.op("||")(table.c.attributes)
            else:
                merged = func.json_patch(attrs, table.c.attributes)
            values = {
                c: func.coalesce(table.c[c], bindparam(f"b_{c}", type_=table.c[c].type)) for c in columns
            }
            values["attributes"] = func.coalesce(merged, table.c.attributes)
        else:
            values = {
                c: func.coalesce(bindparam(f"b_{c}", type_=table.c[c].type), table.c[c]) for c in columns
            }
            values["attributes"] = func.coalesce(attrs, table.c.attributes)
        stmt = update(table).where(table.c.id == bindparam("b_id")).values(updated_at=now, **values)
        await self.session.execute(stmt, [{k: v for k, v in r.items() if k != "b_now"} for r in rows])

    async def _update_from_import_pg(
        self, rows: Sequence[dict[str, Any]], columns: tuple[str, ...], fill_only: bool
    ) -> None:
        """:meth:`update_from_import` on PostgreSQL: one UPDATE per set of columns the rows
        give, built once, run once per row (psycopg pipelines them) with each row's values as a
        plain tuple; the encrypted columns are sealed a column at a time. A column a row leaves
        empty changes nothing (COALESCE keeps the stored value), so it is left out of that row's
        statement. SQLAlchemy's per-row parameter processing (a bind processor per column, a
        key per dict) cost about 15 us a row, and an import meets tens of thousands of contacts
        again (a row repeating an earlier chunk's identity), most giving two or three columns."""
        table = table_of(Contact)
        given: list[list[Any]] = [[r.get(f"b_{c}") for r in rows] for c in columns]
        sealed = [k for k, c in enumerate(columns) if isinstance(table.c[c].type, EncryptedString)]
        if sealed:
            sealer = get_keyring().sealer(context.current_tenant_id())
            for k in sealed:
                col = given[k]
                at = [p for p, v in enumerate(col) if v is not None]
                for p, sv in zip(at, sealer.encrypt_many([col[p] for p in at]), strict=True):
                    col[p] = sv
        given.append([None if not (a := r.get("b_attributes")) else orjson.dumps(a).decode() for r in rows])
        names = (*columns, "attributes")
        groups: dict[tuple[int, ...], list[tuple[Any, ...]]] = {}
        for r, values in zip(rows, zip(*given, strict=True), strict=True):
            key = tuple(k for k, v in enumerate(values) if v is not None)
            groups.setdefault(key, []).append((r.get("b_now"), *[values[k] for k in key], r["b_id"]))
        conn = await self.session.connection()
        for key, params in groups.items():
            await conn.exec_driver_sql(_pg_import_update(tuple(names[k] for k in key), fill_only), params)

    async def identities(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[ContactIdentity]]:
        out: dict[uuid.UUID, list[ContactIdentity]] = defaultdict(list)
        if ids:
            stmt = (
                select(ContactIdentity)
                .where(ContactIdentity.contact_id.in_(ids))
                .order_by(ContactIdentity.is_primary.desc(), ContactIdentity.created_at)
            )
            for row in (await self.session.execute(stmt)).scalars():
                out[row.contact_id].append(row)
        return out

    async def consents(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[ContactConsent]]:
        out: dict[uuid.UUID, list[ContactConsent]] = defaultdict(list)
        if ids:
            stmt = select(ContactConsent).where(ContactConsent.contact_id.in_(ids))
            for row in (await self.session.execute(stmt)).scalars():
                out[row.contact_id].append(row)
        return out

    async def consent(self, contact_id: uuid.UUID, channel: str) -> ContactConsent | None:
        stmt = select(ContactConsent).where(
            ContactConsent.contact_id == contact_id, ContactConsent.channel == channel
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def tag_ids(self, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
        out: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
        if ids:
            stmt = select(ContactTag.contact_id, ContactTag.tag_id).where(ContactTag.contact_id.in_(ids))
            for cid, tid in (await self.session.execute(stmt)).all():
                out[cid].append(tid)
        return out

    async def delete_identities(self, contact_id: uuid.UUID, kind: str) -> None:
        await self.session.execute(
            delete(ContactIdentity).where(
                ContactIdentity.contact_id == contact_id, ContactIdentity.kind == kind
            )
        )

    async def reassign(self, model: type, loser: uuid.UUID, survivor: uuid.UUID) -> None:
        await self.session.execute(
            update(model).where(model.contact_id == loser).values(contact_id=survivor)  # type: ignore[attr-defined]
        )

    async def events_of(self, contact_id: uuid.UUID, limit: int) -> list[ContactEvent]:
        stmt = (
            select(ContactEvent)
            .where(ContactEvent.contact_id == contact_id)
            .order_by(ContactEvent.occurred_at.desc())
            .limit(limit)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def merges_of(self, contact_id: uuid.UUID) -> list[ContactMerge]:
        stmt = select(ContactMerge).where(ContactMerge.survivor_id == contact_id)
        return list((await self.session.execute(stmt)).scalars())


LOCK_TENANT_SQL = (
    "WITH t AS (SELECT 1 FROM tenants WHERE id = %(t)s FOR KEY SHARE)"
    " SELECT has_parameter_privilege('session_replication_role', 'SET')"
    " AND current_setting('session_replication_role') = 'origin'"
    " AND (SELECT count(*) FROM t) = 1"
)
_JSON_OR_NULL = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")
_update_cache: dict[tuple[tuple[str, ...], bool], str] = {}


def _pg_import_update(columns: tuple[str, ...], fill_only: bool) -> str:
    """The UPDATE of :meth:`ContactRepository._update_from_import_pg` for rows giving
    ``columns`` (``%s`` parameters: updated_at, one per column, ``attributes`` as JSON text,
    then the id). ``fill_only`` keeps every non-empty stored value; otherwise the new values
    win (the rows give no empty one: those columns are left out)."""
    key = (columns, fill_only)
    sql = _update_cache.get(key)
    if sql is None:
        sets = ["updated_at = %s"]
        for c in columns:  # (a str parameter goes untyped: the server gives it the column's)
            if c == "attributes":
                sets.append(
                    "attributes = CAST(%s AS jsonb) || attributes"
                    if fill_only
                    else "attributes = CAST(%s AS jsonb)"
                )
            else:
                sets.append(f"{c} = COALESCE({c}, %s)" if fill_only else f"{c} = %s")
        sql = _update_cache[key] = f"UPDATE {table_of(Contact).name} SET {', '.join(sets)} WHERE id = %s"
    return sql


_cast_cache: dict[tuple[str, tuple[str, ...]], list[str]] = {}


def _pg_array_casts(table: Table, columns: tuple[str, ...]) -> list[str]:
    """The PostgreSQL element type of each column, for ``unnest(%s::<type>[])``."""
    key = (table.name, columns)
    casts = _cast_cache.get(key)
    if casts is None:
        casts = []
        for c in columns:
            t = table.c[c].type
            if isinstance(t, Uuid) or c.endswith("_id") or c == "id":
                casts.append("uuid")
            elif isinstance(t, UTCDateTime):
                casts.append("timestamptz")
            elif isinstance(t, Boolean):
                casts.append("boolean")
            elif isinstance(t, JSON):
                casts.append("jsonb")
            else:
                casts.append("text")
        _cast_cache[key] = casts
    return casts


NOW = object()  # a column bound at execution time to the statement's ``now`` parameter


@dataclass
class ColumnInsert:
    """``INSERT INTO <table> (tenant_id, …) SELECT … FROM (SELECT unnest(<array>), …)`` with
    its parameters built ahead: one array per column that varies, one scalar per column with the
    same value in every row; ``tenant_id`` and ``now`` are bound at execution, and ``skip`` (a
    bytea, one byte per row, non-zero to leave the row out) when masked.

    The arrays are unnested in the select list (set-returning functions there run in lockstep,
    a ProjectSet node), not as ``unnest(a, b, …)`` in FROM: a function scan of several arrays
    first copies every one into a tuplestore (which spilled to a temporary file for the
    identities of a 20,000-row chunk); measured ~0.6 us less database CPU per identity row."""

    table: str
    columns: list[str]
    exprs: list[str]
    arrays: list[str]
    params: dict[str, Any]
    rows: int

    def sql(self, *, masked: bool = False) -> str:
        sets = [f"unnest({a}) AS c{k}" for k, a in enumerate(self.arrays, 1)]
        where = ""
        if masked:
            sets.append(f"generate_series(0, {self.rows - 1}) AS ord")
            where = " WHERE get_byte(%(skip)s::bytea, u.ord) = 0"
        return (
            f"INSERT INTO {self.table} (tenant_id, {', '.join(self.columns)})"
            f" SELECT %(tenant_id)s, {', '.join(self.exprs)}"
            f" FROM (SELECT {', '.join(sets)}) AS u{where}"
        )


def column_insert(model: type[Base], values: dict[str, Any], sealed: Collection[str] = ()) -> ColumnInsert:
    """The :class:`ColumnInsert` of ``values`` (column → one value per row, or :data:`NOW`).

    Each varying column goes as one array literal built here (psycopg's list adaptation is per
    element in Python, several times slower than these joins); the last column is an array when
    no other one is, so that ``unnest`` gives the row count. ``sealed`` columns hold only
    sealed values or None (``v<n>.`` and base64), which no separator check needs to scan."""
    table = table_of(model)
    columns = list(values)
    casts = _pg_array_casts(table, tuple(columns))
    params: dict[str, Any] = {}
    exprs: list[str] = []
    arrays: list[str] = []
    rows = 0
    for n, (c, typ) in enumerate(zip(columns, casts, strict=True)):
        col = values[c]
        if col is NOW:
            exprs.append(f"%(now)s::{typ}")
            continue
        rows = len(col)
        # one value for every row (checked at both ends first: most varying columns differ there,
        # and a full count compares every element)
        first = col[0] if rows else None
        if rows and col[-1] == first and col.count(first) == rows and (arrays or n < len(columns) - 1):
            params[f"c{n}"] = _pg_scalar(first, typ)
            exprs.append(f"%(c{n})s::{typ}")
        else:
            binary = _pg_binary_array(col, typ)
            split = _pg_split_text(col, c in sealed) if binary is None and typ == "text" else None
            if binary is not None:
                params[f"c{n}"] = binary
                arrays.append(f"%(c{n})b::{typ}[]")
            elif split is not None:
                params[f"c{n}"] = split
                arrays.append(f"string_to_array(%(c{n})s::text, {_SPLIT_SQL})")
            else:
                params[f"c{n}"] = _pg_array_literal(col, typ)
                arrays.append(f"%(c{n})s::{typ}[]")
            exprs.append(f"u.c{len(arrays)}")
    return ColumnInsert(table.name, columns, exprs, arrays, params, rows)


_SEP, _NULL = "\x1f", "\x1e"  # ASCII unit and record separators
_SPLIT_SQL = "E'\\x1f', E'\\x1e'"


def _pg_split_text(values: Sequence[Any], sealed: bool = False) -> str | None:
    """A text column as one string for ``string_to_array(%s::text, E'\\x1f', E'\\x1e')``: the
    values joined by the unit separator, a NULL written as the record separator. The server
    splits it at about 60% of the cost of parsing an array literal (no quoting, no element
    input function): 0.46 -> 0.27 us per 60-character element, 0.16 -> 0.11 per short Chinese
    name (unnest included). None when a value holds either separator, is not a string, or is the
    only value and empty (``string_to_array('', …)`` is an empty array): a literal then.
    ``sealed``: the values are sealed (base64 text), which holds neither separator: not scanned
    for them (2.5 ms per 40,000 identities)."""
    nulls = values.count(None)
    items = [_NULL if v is None else v for v in values] if nulls else values
    try:
        joined = _SEP.join(items)
    except TypeError:
        return None
    if not joined:
        return None
    if not sealed and (joined.count(_SEP) != len(values) - 1 or joined.count(_NULL) != nulls):
        return None
    return joined


class PgUuidArray(bytes):
    """A ``uuid[]`` in PostgreSQL's binary array format (sent as is, see :func:`binary_arrays`)."""


class PgTextArray(bytes):
    """A ``text[]`` in PostgreSQL's binary array format (sent as is, see :func:`binary_arrays`)."""


_UUID_LEN = "00000010"  # each element's length (16 bytes), in hex


def _pg_binary_array(values: Sequence[Any], typ: str) -> bytes | None:
    """``values`` as a binary ``uuid[]`` (32-hex strings), or as a binary ``text[]`` when they are
    ASCII strings all of one length (blind indexes, kinds, sealed dates…), else None (the caller
    then sends an array literal). The server reads these with a length per element instead of
    parsing text (0.70 -> 0.14 us per uuid, 0.45-0.74 -> 0.20 us per text element on this
    machine); here each is built with one join, which works because every element's length
    prefix is the same (per-element prefixes cost more here than the server saves)."""
    n = len(values)
    if not n:
        return None
    try:  # join refuses anything but strings
        if typ == "uuid":
            if set(map(len, values)) != {32}:
                return None
            body = bytes.fromhex(_UUID_LEN + _UUID_LEN.join(values))
            return PgUuidArray(struct.pack(">iiiii", 1, 0, 2950, n, 1) + body)
        if typ != "text" or len(values[0]) != len(values[-1]):  # (most varying lengths differ there)
            return None
        sizes = set(map(len, values))
        if len(sizes) != 1:
            return None
        size = sizes.pop()
        prefix = struct.pack(">i", size).decode("latin-1")
        text = prefix + prefix.join(values)
    except (TypeError, ValueError):
        return None
    # ASCII values (the prefix is ASCII too below 128, so one check of the whole text does)
    if not (text.isascii() if size < 128 else "".join(values).isascii()):
        return None
    body = text.encode("latin-1")  # ASCII and prefix bytes: one byte each
    return PgTextArray(struct.pack(">iiiii", 1, 0, 25, n, 1) + body)


class _ArrayDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        return obj  # type: ignore[no-any-return]  # a bytes subclass: sent as it is, not copied


class _UuidArrayDumper(_ArrayDumper):
    oid = 2951  # uuid[]


class _TextArrayDumper(_ArrayDumper):
    oid = 1009  # text[]


async def binary_arrays(conn: Any) -> None:
    """Let the psycopg connection under ``conn`` (an SQLAlchemy async connection) send the
    binary arrays of :func:`column_insert` as they are."""
    raw = await conn.get_raw_connection()
    adapters = raw.driver_connection.adapters
    if adapters.get_dumper(PgUuidArray, PyFormat.BINARY) is not _UuidArrayDumper:
        adapters.register_dumper(PgUuidArray, _UuidArrayDumper)
        adapters.register_dumper(PgTextArray, _TextArrayDumper)


IMPORT_IDENTITY_COLUMNS = ("id", "contact_id", "kind", "value", "value_index", "is_primary", "created_at")


@dataclass
class ImportChunkInsert:
    """The two statements of an import chunk's new contacts and identities, built ahead."""

    contacts: ColumnInsert
    identities: ColumnInsert
    owner_pos: list[int]  # per identity, the position of its contact


def import_chunk_insert(
    contacts: dict[str, Any], identities: dict[str, Any], owner_pos: list[int]
) -> ImportChunkInsert:
    """Contacts (``id`` and other columns, one value per row or :data:`NOW`) and identities
    (every column but ``contact_id``), where identity ``j`` belongs to contact ``owner_pos[j]``:
    its ``contact_id`` is taken from the contacts' ids here, which is what lets
    :meth:`ContactRepository.insert_import_chunk` trust these references. The contacts'
    encrypted columns and the identities' ``value`` are given sealed."""
    ids = contacts["id"]
    identities = {"contact_id": [ids[p] for p in owner_pos], **identities}
    return ImportChunkInsert(
        column_insert(Contact, contacts, _SEALED_CONTACT_COLUMNS),
        column_insert(ContactIdentity, identities, ("value",)),
        owner_pos,
    )


_SEALED_CONTACT_COLUMNS = tuple(
    c.name for c in table_of(Contact).columns if isinstance(c.type, EncryptedString)
)


def _hex(value: Any) -> str:
    """A UUID (or its 32-hex or dashed text) as 32 hex digits."""
    if type(value) is str and len(value) == 32:
        return value
    return value.hex if isinstance(value, uuid.UUID) else str(value).replace("-", "")


def _pg_scalar(value: Any, cast: str) -> Any:
    """One value of a column for ``%s::<cast>`` (the same for every row of a bulk insert)."""
    if value is None or cast in ("timestamptz", "boolean"):
        return value
    if cast == "jsonb":
        return orjson.dumps(value).decode()
    return str(value)


def _quote(s: str) -> str:
    if "\\" in s or '"' in s:
        s = s.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + s + '"'


def _pg_array_literal(values: Sequence[Any], cast: str) -> str:
    """A PostgreSQL array literal (``{…}``) of ``values`` for ``%s::<cast>[]`` (the parameter
    goes untyped, so the server parses it straight into the array type)."""
    if cast == "uuid":  # hex or UUID: nothing to quote
        if None not in values and all(type(v) is str for v in values):
            return "".join(("{", ",".join(values), "}"))
        body = ",".join(["NULL" if v is None else str(v) for v in values])
    elif cast == "boolean":
        body = ",".join(["NULL" if v is None else ("t" if v else "f") for v in values])
    elif cast == "timestamptz":
        memo: dict[Any, str] = {}
        out = []
        for v in values:
            if v is None:
                out.append("NULL")
            else:
                t = memo.get(v)
                if t is None:
                    t = memo[v] = '"' + v.isoformat() + '"'
                out.append(t)
        body = ",".join(out)
    elif cast == "jsonb":
        body = ",".join(
            ["NULL" if v is None else ('"{}"' if not v else _quote(orjson.dumps(v).decode())) for v in values]
        )
    else:
        # The common case: one join and one scan for characters to escape; a NULL goes in as a
        # NUL character first (which no PostgreSQL text can hold), then replaced.
        nulls = values.count(None)
        items = ["\0" if v is None else v for v in values] if nulls else values
        body = '","'.join(items)
        # (the separators hold the only quotes when no value has one)
        if "\\" not in body and body.count('"') == 2 * (len(values) - 1) and body.count("\0") == nulls:
            literal = "".join(('{"', body, '"}'))
            return literal.replace('"\0"', "NULL") if nulls else literal
        body = ",".join(["NULL" if v is None else _quote(v) for v in values])
    # join, not +: concatenating a string of several hundred kB costs ~50x the copy (CPython)
    return "".join(("{", body, "}"))


class AccountRepository(TenantRepository[Account]):
    model = Account


class FieldRepository(TenantRepository[FieldDefinition]):
    model = FieldDefinition

    async def for_object(self, object_type: str) -> dict[str, FieldDefinition]:
        stmt = select(FieldDefinition).where(FieldDefinition.object_type == object_type)
        return {f.key: f for f in (await self.session.execute(stmt)).scalars()}


class TagRepository(TenantRepository[Tag]):
    model = Tag

    async def groups(self) -> list[TagGroup]:
        return list((await self.session.execute(select(TagGroup).order_by(TagGroup.key))).scalars())

    async def existing_links(
        self, contact_ids: Sequence[uuid.UUID], tag_ids: Sequence[uuid.UUID]
    ) -> set[tuple[uuid.UUID, uuid.UUID]]:
        stmt = select(ContactTag.contact_id, ContactTag.tag_id).where(
            ContactTag.contact_id.in_(contact_ids), ContactTag.tag_id.in_(tag_ids)
        )
        return {(a, b) for a, b in (await self.session.execute(stmt)).all()}


class SegmentRepository(TenantRepository[Segment]):
    model = Segment

    async def member_ids(self, segment_id: uuid.UUID) -> set[uuid.UUID]:
        stmt = select(SegmentMember.contact_id).where(SegmentMember.segment_id == segment_id)
        return set((await self.session.execute(stmt)).scalars())


class DataJobRepository(TenantRepository[DataJob]):
    model = DataJob


def _filters():  # type: ignore[no-untyped-def]
    from tessera.core.http.listing import FilterField, FilterSet

    return FilterSet(
        fields={
            "name": FilterField(Contact.name, operators=("eq", "contains")),
            "city": FilterField(Contact.city, operators=("eq", "in", "contains")),
            "lifecycle_stage": FilterField(
                Contact.lifecycle_stage, choices=("subscriber", "lead", "qualified", "customer", "churned")
            ),
            "source": FilterField(Contact.source),
            "owner_id": FilterField(Contact.owner_id, kind=uuid.UUID),
            "account_id": FilterField(Contact.account_id, kind=uuid.UUID),
            "created_at": FilterField(
                Contact.created_at, kind=__import__("datetime").datetime, operators=("gte", "lte")
            ),
        },
        sortable={"created_at": Contact.created_at, "name": Contact.name, "updated_at": Contact.updated_at},
        id_column=Contact.id,
    )


CONTACT_FILTERS = _filters()
