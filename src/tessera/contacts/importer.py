"""Contact import: file parsing (CSV in UTF-8 or GBK, XLSX), column mapping, row validation
and the batched upsert.

The hot path avoids the ORM: rows are normalised in Python, blind indexes are computed once,
existing identities are looked up per batch with one IN query, and new contacts and identities
are inserted with executemany; existing contacts are updated with COALESCE so empty cells never
erase data.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts.dedupe import normalize_identity
from tessera.contacts.models import (
    LIFECYCLE_STAGES,
    Contact,
    ContactIdentity,
    ContactTag,
    FieldDefinition,
    Tag,
)
from tessera.contacts.repository import ContactRepository, FieldRepository
from tessera.contacts.service.fields import coerce_value
from tessera.core import context
from tessera.core.crypto.types import blind_index
from tessera.core.db.base import utcnow, uuid7
from tessera.core.http.errors import InvalidInput, TesseraError

HEADER_ALIASES = {
    "name": ("name", "full name", "fullname", "contact", "姓名", "名字", "客户名称", "联系人", "客户姓名"),
    "phone": (
        "phone",
        "mobile",
        "cell",
        "telephone",
        "phone number",
        "手机",
        "手机号",
        "手机号码",
        "电话",
        "联系电话",
    ),
    "email": ("email", "e-mail", "mail", "email address", "邮箱", "电子邮箱", "邮件"),
    "city": ("city", "城市", "所在城市"),
    "address": ("address", "地址", "住址", "联系地址"),
    "gender": ("gender", "sex", "性别"),
    "birthday": ("birthday", "birth date", "date of birth", "dob", "生日", "出生日期"),
    "lifecycle_stage": ("stage", "lifecycle", "lifecycle stage", "阶段", "生命周期"),
    "source": ("source", "来源", "渠道"),
    "language": ("language", "语言"),
    "given_name": ("first name", "given name", "名"),
    "family_name": ("last name", "family name", "surname", "姓"),
    "tags": ("tags", "tag", "标签"),
}
TARGETS = set(HEADER_ALIASES)
GENDERS = {
    "男": "male",
    "女": "female",
    "m": "male",
    "f": "female",
    "male": "male",
    "female": "female",
    "other": "other",
    "其他": "other",
}
BATCH = 2000


@dataclass
class ParsedFile:
    headers: list[str]
    rows: list[list[str]]
    encoding: str


def decode(raw: bytes) -> tuple[str, str]:
    """UTF-8 (with or without BOM) when it decodes, else GB18030 (a superset of GBK)."""
    try:
        return raw.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return raw.decode("gb18030"), "gbk"
    except UnicodeDecodeError:
        raise InvalidInput("the file is neither UTF-8 nor GBK text", field="file") from None


def parse(raw: bytes, filename: str) -> ParsedFile:
    if filename.lower().endswith(".xlsx") or raw[:4] == b"PK\x03\x04":
        import openpyxl

        try:
            wb = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
        except Exception:
            raise InvalidInput("the file is not a readable XLSX workbook", field="file") from None
        ws = wb.active
        rows = [
            [
                "" if v is None else (v.date().isoformat() if isinstance(v, dt.datetime) else str(v)).strip()
                for v in r
            ]
            for r in ws.iter_rows(values_only=True)
        ]
        enc = "xlsx"
    else:
        text, enc = decode(raw)
        rows = [[c.strip() for c in r] for r in csv.reader(io.StringIO(text))]
    rows = [r for r in rows if any(r)]
    if not rows:
        raise InvalidInput("the file has no header row", field="file")
    headers = rows[0]
    width = len(headers)
    return ParsedFile(headers, [(r + [""] * width)[:width] for r in rows[1:]], enc)


def auto_mapping(headers: list[str], defs: dict[str, FieldDefinition]) -> dict[str, str]:
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for h in headers:
        key = h.strip().lower()
        target = "skip"
        for t, aliases in HEADER_ALIASES.items():
            if key in aliases and t not in used:
                target = t
                break
        if target == "skip":
            for fdef in defs.values():
                if key in (fdef.key.lower(), fdef.label.strip().lower()):
                    target = f"attributes.{fdef.key}"
                    break
        if target != "skip":
            used.add(target)
        mapping[h] = target
    return mapping


def check_mapping(mapping: dict[str, str], headers: list[str], defs: dict[str, FieldDefinition]) -> None:
    for h, t in mapping.items():
        if h not in headers:
            raise InvalidInput(f"'{h}' is not a column of the file", field=f"mapping.{h}")
        if t == "skip" or t in TARGETS:
            continue
        if t.startswith("attributes.") and t.split(".", 1)[1] in defs:
            continue
        raise InvalidInput(f"'{t}' is not an import target", field=f"mapping.{h}")
    if "name" not in mapping.values():
        raise InvalidInput("a column must be mapped to name", field="mapping")


@dataclass
class Problem:
    row: int
    field: str
    rule: str
    message: str


@dataclass
class Record:
    row: int
    values: dict[str, Any]
    attributes: dict[str, Any]
    idents: list[tuple[str, str, str]]  # kind, value, blind index
    tags: list[str] = field(default_factory=list)


def validate_row(
    row_no: int,
    cells: list[str],
    headers: list[str],
    mapping: dict[str, str],
    defs: dict[str, FieldDefinition],
    region: str,
) -> tuple[Record | None, list[Problem]]:
    values: dict[str, Any] = {}
    attrs: dict[str, Any] = {}
    idents: list[tuple[str, str, str]] = []
    tags: list[str] = []
    problems: list[Problem] = []
    for h, cell in zip(headers, cells, strict=False):
        t = mapping.get(h, "skip")
        if t == "skip" or cell == "":
            continue
        try:
            if t in ("phone", "email"):
                for part in cell.replace("；", ";").replace(",", ";").split(";"):
                    if part.strip():
                        v = normalize_identity(t, part.strip(), region, field=t)
                        idents.append((t, v, blind_index(t, v)))
            elif t == "gender":
                g = GENDERS.get(cell.lower())
                if g is None:
                    raise InvalidInput(f"'{cell}' is not a gender", field="gender", rule="choice")
                values["gender"] = g
            elif t == "birthday":
                try:
                    values["birthday"] = dt.date.fromisoformat(
                        cell.replace("/", "-").replace(".", "-")
                    ).isoformat()
                except ValueError:
                    raise InvalidInput(
                        f"'{cell}' is not a date (YYYY-MM-DD)", field="birthday", rule="date"
                    ) from None
            elif t == "lifecycle_stage":
                if cell.lower() not in LIFECYCLE_STAGES:
                    raise InvalidInput(
                        f"'{cell}' is not a lifecycle stage", field="lifecycle_stage", rule="choice"
                    )
                values["lifecycle_stage"] = cell.lower()
            elif t == "tags":
                tags += [x.strip() for x in cell.replace("，", ",").split(",") if x.strip()]
            elif t.startswith("attributes."):
                key = t.split(".", 1)[1]
                attrs[key] = coerce_value(defs[key], cell, field=t)
            else:
                values[t] = cell[:200]
        except TesseraError as exc:
            rule = str(exc.details.get("rule") or exc.code.split(".")[-1])
            problems.append(Problem(row_no, exc.field or t, rule, exc.message))
    if not values.get("name"):
        problems.append(Problem(row_no, "name", "required", "name is required"))
    for key, fdef in defs.items():
        if fdef.required and key not in attrs and not any(p.field == f"attributes.{key}" for p in problems):
            problems.append(Problem(row_no, f"attributes.{key}", "required", f"{key} is required"))
    if problems:
        return None, problems
    return Record(row_no, values, attrs, idents, tags), []


def dedupe_in_file(records: list[Record]) -> tuple[list[Record], list[Problem]]:
    """Fold rows sharing an identity into the first one (later non-empty cells fill gaps)."""
    first: dict[tuple[str, str], Record] = {}
    out: list[Record] = []
    notes: list[Problem] = []
    for r in records:
        owner = next((first[(k, i)] for k, _, i in r.idents if (k, i) in first), None)
        if owner is None:
            out.append(r)
            for k, _, i in r.idents:
                first[(k, i)] = r
            continue
        notes.append(
            Problem(
                r.row,
                "phone" if any(k == "phone" for k, _, _ in r.idents) else "email",
                "duplicate_in_file",
                f"same identity as row {owner.row}; merged into it",
            )
        )
        for k, v in r.values.items():
            owner.values.setdefault(k, v)
        for k, v in r.attributes.items():
            owner.attributes.setdefault(k, v)
        have = {(k, i) for k, _, i in owner.idents}
        for ident in r.idents:
            if (ident[0], ident[2]) not in have:
                owner.idents.append(ident)
                first[(ident[0], ident[2])] = owner
        owner.tags += [t for t in r.tags if t not in owner.tags]
    return out, notes


COLUMNS = (
    "name",
    "given_name",
    "family_name",
    "gender",
    "birthday",
    "address",
    "city",
    "language",
    "source",
    "lifecycle_stage",
)


async def upsert_batch(
    session: AsyncSession, records: list[Record], *, source: str = "import"
) -> tuple[int, int, list[uuid.UUID]]:
    """Insert new contacts and fill existing ones; (created, updated, contact ids per record)."""
    repo = ContactRepository(session)
    owners = await repo.owners_of_indexes([(k, i) for r in records for k, _, i in r.idents])
    tid, now = context.current_tenant_id(), utcnow()
    new_contacts: list[dict[str, Any]] = []
    new_idents: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    ids: list[uuid.UUID] = []
    created = updated = 0
    for r in records:
        existing = next((owners[(k, i)] for k, _, i in r.idents if (k, i) in owners), None)
        if existing is None:
            cid = uuid7()
            phone = next((v for k, v, _ in r.idents if k == "phone"), None)
            row = {c: r.values.get(c) for c in COLUMNS}
            row.update(
                id=cid,
                tenant_id=tid,
                created_at=now,
                updated_at=now,
                attributes=r.attributes,
                lifecycle_stage=r.values.get("lifecycle_stage") or "lead",
                source=r.values.get("source") or source,
                phone_tail=phone[-4:] if phone else None,
                account_id=None,
                owner_id=None,
                merged_into_id=None,
            )
            new_contacts.append(row)
            seen_kinds: set[str] = set()
            for k, v, i in r.idents:
                new_idents.append(
                    {
                        "id": uuid7(),
                        "tenant_id": tid,
                        "contact_id": cid,
                        "kind": k,
                        "value": v,
                        "value_index": i,
                        "is_primary": k not in seen_kinds,
                        "created_at": now,
                    }
                )
                seen_kinds.add(k)
                owners[(k, i)] = cid
            created += 1
        else:
            cid = existing
            updates.append(
                {
                    "b_id": cid,
                    **{f"b_{c}": r.values.get(c) for c in COLUMNS},
                    "b_attributes": r.attributes or None,
                }
            )
            for k, v, i in r.idents:
                if (k, i) not in owners:
                    new_idents.append(
                        {
                            "id": uuid7(),
                            "tenant_id": tid,
                            "contact_id": cid,
                            "kind": k,
                            "value": v,
                            "value_index": i,
                            "is_primary": False,
                            "created_at": now,
                        }
                    )
                    owners[(k, i)] = cid
            updated += 1
        ids.append(cid)
    table = cast(Table, Contact.__table__)
    if new_contacts:
        await session.execute(insert(table), new_contacts)
    if new_idents:
        await session.execute(insert(cast(Table, ContactIdentity.__table__)), new_idents)
    if updates:
        stmt = (
            update(table)
            .where(table.c.id == bindparam("b_id"))
            .values(
                updated_at=now,
                attributes=func.coalesce(
                    bindparam("b_attributes", type_=table.c.attributes.type), table.c.attributes
                ),
                **{c: func.coalesce(bindparam(f"b_{c}", type_=table.c[c].type), table.c[c]) for c in COLUMNS},
            )
        )
        await session.execute(stmt, updates)
    await _tag_records(session, records, ids)
    return created, updated, ids


async def _tag_records(session: AsyncSession, records: list[Record], ids: list[uuid.UUID]) -> None:
    names = {t for r in records for t in r.tags}
    if not names:
        return
    existing = {
        t.name: t.id
        for t in (
            await session.execute(select(Tag).where(Tag.group_id.is_(None), Tag.name.in_(names)))
        ).scalars()
    }
    for n in names - set(existing):
        tag = Tag(name=n, group_id=None)
        session.add(tag)
        await session.flush()
        existing[n] = tag.id
    tid, now = context.current_tenant_id(), utcnow()
    pairs = {(cid, existing[t]) for r, cid in zip(records, ids, strict=True) for t in r.tags}
    have = set(
        (
            await session.execute(
                select(ContactTag.contact_id, ContactTag.tag_id).where(
                    ContactTag.contact_id.in_({p[0] for p in pairs})
                )
            )
        ).tuples()
    )
    rows = [
        {"tenant_id": tid, "contact_id": c, "tag_id": t, "source": "import", "created_at": now}
        for c, t in pairs
        if (c, t) not in have
    ]
    if rows:
        await session.execute(insert(ContactTag), rows)


def chunks(items: list[Any], size: int = BATCH) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def field_defs(session: AsyncSession) -> dict[str, FieldDefinition]:
    return await FieldRepository(session).for_object("contact")


def error_csv(headers: list[str], rows: list[list[str]], problems: list[Problem]) -> bytes:
    by_row: dict[int, list[Problem]] = {}
    for p in problems:
        by_row.setdefault(p.row, []).append(p)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["row", *headers, "errors"])
    for row_no in sorted(by_row):
        reasons = "; ".join(f"{p.field}: {p.rule}: {p.message}" for p in by_row[row_no])
        w.writerow([row_no, *rows[row_no - 2], reasons])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")
