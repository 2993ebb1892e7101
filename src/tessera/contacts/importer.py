"""Contact import: file parsing (CSV in UTF-8 or GBK, XLSX), column mapping, row validation
and the chunked upsert.

How it is fast (about 100x the row-at-a-time version) without giving up anything:

* the file is streamed in chunks of :data:`CHUNK` rows (CSV is never held parsed in memory);
* a chunk is validated in a worker thread while the previous chunk is written, so Python and
  the database work at the same time; on PostgreSQL two chunks are written at a time, on two
  connections, commits kept in file order (:func:`tessera.contacts.import_bulk.write_bulk`);
* plain mainland mobiles skip the phone parser (anything else goes through phonenumbers, and its
  answers are cached), and encryption and blind indexes use one :class:`~tessera.core.crypto.
  keyring.Sealer` per chunk (bound AES-GCM key, nonces drawn in blocks);
* existing identities are looked up with one array query per kind and chunk, and new contacts
  and identities go in with one INSERT … SELECT FROM unnest(…) per table and chunk on PostgreSQL
  (executemany on SQLite), ``tenant_id`` set from the tenant in scope (row-level security checks
  it); on PostgreSQL those statements are built in the worker thread as well
  (:mod:`tessera.contacts.import_bulk`), so the event loop mostly waits for the database;
* existing contacts are updated with COALESCE so empty cells never erase data; a row repeating an
  identity met earlier in the same file only fills gaps of the first one;
* the cyclic garbage collector runs less often during a run (:func:`relaxed_gc`), which alone
  saves about a third of the Python time.
"""

from __future__ import annotations

import array
import bisect
import codecs
import contextlib
import csv
import datetime as dt
import gc
import hashlib
import io
import itertools
import operator
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
from sqlalchemy import String, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from tessera.contacts.dedupe import cached_phone, normalize_email
from tessera.contacts.models import (
    LIFECYCLE_STAGES,
    Contact,
    ContactTag,
    FieldDefinition,
    Tag,
)
from tessera.contacts.repository import ContactRepository, FieldRepository
from tessera.contacts.service.fields import coerce_value
from tessera.core import context
from tessera.core.crypto.keyring import Sealer, get_keyring
from tessera.core.db.base import utcnow
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
CHUNK = 20_000  # rows; 10,000 cost the database ~9% more per row (round trips, index locality)
BATCH = CHUNK  # kept for callers of the old name


@dataclass
class ParsedFile:
    headers: list[str]
    rows: list[list[str]]
    encoding: str


@dataclass
class FileInfo:
    headers: list[str]
    total_rows: int
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


def _is_xlsx(raw: bytes, filename: str) -> bool:
    return filename.lower().endswith(".xlsx") or raw[:4] == b"PK\x03\x04"


def _xlsx_rows(raw: bytes) -> list[list[str]]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
    except Exception:
        raise InvalidInput("the file is not a readable XLSX workbook", field="file") from None
    ws = wb.active
    return [
        [
            "" if v is None else (v.date().isoformat() if isinstance(v, dt.datetime) else str(v)).strip()
            for v in r
        ]
        for r in ws.iter_rows(values_only=True)
    ]


def _clean(rows: Iterable[list[str]]) -> Iterator[list[str]]:
    """Cells stripped, blank rows dropped (row numbers count the rows kept, header is row 1)."""
    for r in rows:
        if not any(r):
            continue
        cells = list(map(str.strip, r))
        if any(cells):
            yield cells


def parse(raw: bytes, filename: str) -> ParsedFile:
    """The whole file in memory (XLSX, small files, tests); imports stream with :func:`read_chunks`."""
    if _is_xlsx(raw, filename):
        rows, enc = list(_clean(_xlsx_rows(raw))), "xlsx"
    else:
        text, enc = decode(raw)
        rows = list(_clean(csv.reader(io.StringIO(text))))
    if not rows:
        raise InvalidInput("the file has no header row", field="file")
    headers = rows[0]
    width = len(headers)
    return ParsedFile(headers, [(r + [""] * width)[:width] for r in rows[1:]], enc)


def _text_encoding(raw: bytes) -> str:
    """'utf-8' when the bytes decode as UTF-8, else 'gbk' when GB18030 accepts them (checked in
    blocks, so a large upload is never held twice as text)."""
    for enc, codec in (("utf-8", "utf-8-sig"), ("gbk", "gb18030")):
        dec = codecs.getincrementaldecoder(codec)()
        try:
            view = memoryview(raw)
            for i in range(0, len(raw), 1 << 20):
                dec.decode(view[i : i + (1 << 20)])
            dec.decode(b"", final=True)
            return enc
        except UnicodeDecodeError:
            continue
    raise InvalidInput("the file is neither UTF-8 nor GBK text", field="file")


def scan(raw: bytes, filename: str) -> FileInfo:
    """Headers, number of data rows and encoding, without keeping the parsed rows."""
    if _is_xlsx(raw, filename):
        parsed = parse(raw, filename)
        return FileInfo(parsed.headers, len(parsed.rows), parsed.encoding)
    enc = _text_encoding(raw)
    stream = io.TextIOWrapper(io.BytesIO(raw), encoding=_CODECS[enc], newline="")
    reader = csv.reader(stream)
    headers = next(_clean(reader), None)  # leaves the reader just after the header
    if headers is None:
        raise InvalidInput("the file has no header row", field="file")
    total = _plain_rows(raw) if enc == "utf-8" else None
    if total is None:  # the rows _clean keeps, counted without making their stripped cells
        strip = str.strip
        total = sum(1 for r in reader if any(map(strip, r)))
    return FileInfo(headers, total, enc)


# Bytes that may belong to a blank cell of a UTF-8 CSV line: ASCII whitespace (str.isspace),
# the comma, and every byte of a multi-byte character (some of those are whitespace).
_BLANKISH = bytes([9, 11, 12, 28, 29, 30, 31, 32, 44, *range(128, 256)])


def _plain_rows(raw: bytes) -> int | None:
    """The data rows :func:`scan`'s csv path counts (lines with a non-blank cell, after the
    header), for a UTF-8 file where a record is a line: no quote, CR or NUL (else None). A line
    holding any other ASCII character is not blank; the few others (whitespace, commas and
    non-ASCII characters only) are decoded and checked. About 0.1 s for a million rows, a
    sixth of parsing them."""
    if b'"' in raw or b"\r" in raw or b"\0" in raw:
        return None
    parts = raw.translate(None, _BLANKISH).split(b"\n")
    lines: list[bytes] | None = None
    blank = 0
    last = len(parts) - 1
    for k in itertools.compress(range(len(parts)), map(operator.not_, parts)):
        if k == last and k:  # what follows the last newline (usually nothing)
            line = raw[raw.rfind(b"\n") + 1 :]
        else:
            lines = raw.split(b"\n") if lines is None else lines
            line = lines[k]
        text = line.decode("utf-8-sig" if k == 0 else "utf-8")
        blank += not any(map(str.strip, text.split(",")))
    kept = len(parts) - blank
    return kept - 1 if kept else None  # the first is the header


_CODECS = {"utf-8": "utf-8-sig", "gbk": "gb18030"}

Chunk = list[tuple[int, list[str]]]  # (row number, cells padded to the header width)


_RAMP_LEAST = 500  # the smallest chunk of a ramp (below it, chunks keep their size)


def ramped_sizes(size: int, total: int) -> Callable[[int], int]:
    """Chunk sizes for a pipelined import of ``total`` rows: the size of the chunk that starts
    after ``done`` rows. ``size`` in the middle; smaller at both ends, where one side of the
    pipeline waits for the other. The first chunks go size/8, size/8, size/4, size/2 (the
    database starts writing after an eighth of a chunk's preparation instead of a whole one);
    the last ``size`` rows go in halves, size/2, size/4 … down to size/8 (the write left after
    the last preparation, the tail, is that of a small chunk). Sizes depend on the row count
    only, so a resumed run cuts the file where the first run did. Files under four chunks, and
    chunks under 4,000 rows, keep ``size`` throughout."""
    least = size // 8
    if least < _RAMP_LEAST or total < 4 * size:
        return lambda done: size

    def next_size(done: int) -> int:
        if done < size:  # the ramp up: each chunk as large as what came before
            return max(least, min(done, size - done))
        left = total - done
        if 0 < left <= size:  # the ramp down (more rows than counted: whole chunks)
            return max(least, left // 2)
        return size

    return next_size


def read_chunks(
    path: Path,
    filename: str,
    encoding: str | None = None,
    size: int = CHUNK,
    sizes: Callable[[int], int] | None = None,
) -> tuple[list[str], Iterator[Chunk]]:
    """The header and the data rows of an uploaded file in chunks of ``size`` (or of
    ``sizes(rows read before the chunk)``, see :func:`ramped_sizes`); CSV is streamed
    (``encoding`` as found at upload: ``utf-8`` or ``gbk``; detected when not given)."""
    with path.open("rb") as fh:
        head = fh.read(4)
    stream: io.TextIOBase | None = None
    source: Iterator[list[str]]
    if encoding == "xlsx" or _is_xlsx(head, filename):
        source = iter(_xlsx_rows(path.read_bytes()))
    else:
        enc = encoding if encoding in _CODECS else _text_encoding(path.read_bytes())
        stream = open(path, encoding=_CODECS[str(enc)], newline="")  # noqa: SIM115 - closed below
        source = csv.reader(stream)
    headers = next(_clean(source), None)  # leaves ``source`` just after the header
    if headers is None:
        if stream is not None:
            stream.close()
        raise InvalidInput("the file has no header row", field="file")
    width = len(headers)

    def gen() -> Iterator[Chunk]:
        # what _clean does, inline (one generator less per row): cells stripped, blank rows
        # dropped, row numbers counting the rows kept
        chunk: Chunk = []
        n = 1
        strip = str.strip
        limit = sizes(0) if sizes is not None else size
        try:
            for raw in source:
                r = list(map(strip, raw))
                if not any(r):
                    continue
                n += 1
                if len(r) != width:
                    r = (r + [""] * width)[:width]
                chunk.append((n, r))
                if len(chunk) >= limit:
                    yield chunk
                    chunk = []
                    if sizes is not None:
                        limit = sizes(n - 1)
            if chunk:
                yield chunk
        finally:
            if stream is not None:
                stream.close()

    return headers, gen()


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
    # Encrypted ahead of the write (:func:`seal_records`): one per identity, and the personal
    # fields of ``values``; None when not done (the writer then encrypts).
    sealed: list[str] | None = None
    sealed_values: dict[str, str] | None = None
    # Ids for the rows it may create (its contact, then one per identity), drawn ahead too.
    new_ids: list[str] | None = None


# Text cells are cut to their column's length (a long city must not fail a whole chunk).
_LIMITS = {
    c.name: int(getattr(c.type, "length", None) or 200)
    for c in Contact.__table__.c
    if isinstance(c.type, String)
}


_DATES: dict[str, str | None] = {}  # a cell → its ISO date (None: not a date); bounded below


def _date(cell: str) -> str:
    """A birthday cell as an ISO date (``/`` and ``.`` accepted as separators). A file holds a
    few tens of thousands of distinct dates at most, so the answers are remembered."""
    iso = _DATES.get(cell, "")
    if iso == "":
        try:
            iso = dt.date.fromisoformat(cell.replace("/", "-").replace(".", "-")).isoformat()
        except ValueError:
            iso = None
        if len(_DATES) >= 100_000:
            _DATES.clear()
        _DATES[cell] = iso
    if iso is None:
        raise InvalidInput(f"'{cell}' is not a date (YYYY-MM-DD)", field="birthday", rule="date")
    return iso


class RowValidator:
    """Validates and normalises rows against a mapping; the column plan is worked out once.

    Identities come out normalised (E.164 phones, lower-case emails) with their blind index.
    """

    def __init__(
        self,
        headers: list[str],
        mapping: dict[str, str],
        defs: dict[str, FieldDefinition],
        region: str,
        sealer: Sealer,
    ) -> None:
        self.plan = [(i, t) for i, h in enumerate(headers) if (t := mapping.get(h, "skip")) != "skip"]
        self.defs = defs
        self.region = region
        self.sealer = sealer
        self.index = sealer.blind_index
        self.required = [k for k, d in defs.items() if d.required]

    def __call__(self, row_no: int, cells: list[str]) -> tuple[Record | None, list[Problem]]:
        values: dict[str, Any] = {}
        attrs: dict[str, Any] = {}
        idents: list[tuple[str, str, str]] = []
        tags: list[str] = []
        problems: list[Problem] = []
        region, index = self.region, self.index
        for i, t in self.plan:
            cell = cells[i] if i < len(cells) else ""
            if cell == "":
                continue
            try:
                if t == "phone" or t == "email":
                    if ";" in cell or "," in cell or "；" in cell:
                        parts = [p.strip() for p in cell.replace("；", ";").replace(",", ";").split(";")]
                    else:
                        parts = [cell]
                    for part in parts:
                        if part:
                            v = (
                                cached_phone(part, region, field=t)
                                if t == "phone"
                                else normalize_email(part, field=t)
                            )
                            idents.append((t, v, index(t, v)))
                elif t == "name" or t == "city":
                    values[t] = cell[: _LIMITS[t]]
                elif t == "gender":
                    g = GENDERS.get(cell.lower())
                    if g is None:
                        raise InvalidInput(f"'{cell}' is not a gender", field="gender", rule="choice")
                    values["gender"] = g
                elif t == "birthday":
                    values["birthday"] = _date(cell)
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
                    attrs[key] = coerce_value(self.defs[key], cell, field=t)
                else:
                    values[t] = cell[: _LIMITS.get(t, 200)]
            except TesseraError as exc:
                rule = str(exc.details.get("rule") or exc.code.split(".")[-1])
                problems.append(Problem(row_no, exc.field or t, rule, exc.message))
        if not values.get("name"):
            problems.append(Problem(row_no, "name", "required", "name is required"))
        for key in self.required:
            if key not in attrs and not any(p.field == f"attributes.{key}" for p in problems):
                problems.append(Problem(row_no, f"attributes.{key}", "required", f"{key} is required"))
        if problems:
            return None, problems
        return Record(row_no, values, attrs, idents, tags), []


def validate_row(
    row_no: int,
    cells: list[str],
    headers: list[str],
    mapping: dict[str, str],
    defs: dict[str, FieldDefinition],
    region: str,
) -> tuple[Record | None, list[Problem]]:
    """One row (the tenant in scope gives the blind-index key); bulk work uses :class:`RowValidator`."""
    sealer = get_keyring().sealer(context.current_tenant_id())
    return RowValidator(headers, mapping, defs, region, sealer)(row_no, cells)


def dedupe_in_file(records: list[Record]) -> tuple[list[Record], list[Problem]]:
    """Fold rows sharing an identity into the first one (later non-empty cells fill gaps)."""
    first: dict[tuple[str, str], Record] = {}
    out: list[Record] = []
    notes: list[Problem] = []
    for r in records:
        owner = None
        for k, _, i in r.idents:
            owner = first.get((k, i))
            if owner is not None:
                break
        if owner is None:
            out.append(r)
            for k, _, i in r.idents:
                first[(k, i)] = r
            continue
        notes.append(_dup_note(r, f"same identity as row {owner.row}; merged into it"))
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


def _dup_note(r: Record, message: str) -> Problem:
    kind = "phone" if any(k == "phone" for k, _, _ in r.idents) else "email"
    return Problem(r.row, kind, "duplicate_in_file", message)


_gc_lock = threading.Lock()
_gc_users = 0
_gc_saved: tuple[int, int, int] | None = None


@contextlib.contextmanager
def relaxed_gc(young: int = 1_000_000) -> Iterator[None]:
    """Fewer cyclic-GC passes while an import runs (process-wide, restored by the last user).

    Every row makes a handful of lists, dicts and records that live as long as their chunk;
    with the default young-generation threshold (700 allocations) the collector runs every few
    rows and takes about a third of the import's CPU, and even at 50,000 each young pass walks
    the chunk in hand (a fifth of the Python time at 300k rows). At 1,000,000 most of a chunk
    is freed before a pass; full collections wait for 1,000 young-generation-1 passes. Memory
    is still freed by reference counting; cycles wait a little longer.
    """
    global _gc_users, _gc_saved
    with _gc_lock:
        if _gc_users == 0:
            _gc_saved = gc.get_threshold()
            gc.set_threshold(young, _gc_saved[1], max(_gc_saved[2], 1000))
        _gc_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_users -= 1
            if _gc_users == 0 and _gc_saved is not None:
                gc.set_threshold(*_gc_saved)


_switch_users = 0
_switch_saved = 0.005


@contextlib.contextmanager
def prompt_handoff(interval: float = 0.0005) -> Iterator[None]:
    """A shorter GIL switch interval while an import runs (process-wide, restored by the last
    user). The worker thread validating the next chunk holds the GIL nearly all the time; each
    reply of the database then waits up to the interval (5 ms by default) before the event loop
    may read it, and a chunk takes about a dozen round trips, during which the database idles."""
    global _switch_users, _switch_saved
    with _gc_lock:
        if _switch_users == 0:
            _switch_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(interval, _switch_saved))
        _switch_users += 1
    try:
        yield
    finally:
        with _gc_lock:
            _switch_users -= 1
            if _switch_users == 0:
                sys.setswitchinterval(_switch_saved)


@dataclass
class PreparedChunk:
    """A chunk after validation and in-chunk dedupe: what to write and what to report."""

    rows: Chunk
    records: list[Record]
    problems: list[Problem]
    duplicates: list[Problem]

    @property
    def last_row(self) -> int:
        return self.rows[-1][0] if self.rows else 1


def validate_chunk(validator: RowValidator, rows: Chunk) -> tuple[list[Record], list[Problem], list[Problem]]:
    """A chunk's valid records (duplicates inside the file resolved), its rows' problems and
    the duplicates' reports."""
    records: list[Record] = []
    problems: list[Problem] = []
    for n, cells in rows:
        rec, probs = validator(n, cells)
        if rec is not None:
            records.append(rec)
        else:
            problems += probs
    records, dups = dedupe_in_file(records)
    return records, problems, dups


def prepare_chunk(validator: RowValidator, rows: Chunk, *, seal: bool = True) -> PreparedChunk:
    """CPU-only work of a chunk (no database, no await): runs in a worker thread, one chunk at
    a time. With ``seal`` the personal values are encrypted here too (:func:`seal_records`), so
    that work overlaps the database's writing of the previous chunk."""
    records, problems, dups = validate_chunk(validator, rows)
    if seal:
        seal_records(records, validator.sealer)
    return PreparedChunk(rows, records, problems, dups)


def seal_records(records: list[Record], sealer: Sealer) -> None:
    """Encrypt each record's identities and personal fields (after in-file dedupe merged them)
    and draw the ids of the rows it may create."""
    ids = uuid7_hex(len(records) + sum(len(r.idents) for r in records))
    plain = [v for r in records for _, v, _ in r.idents]
    plain += [r.values[c] for r in records for c in _SEALED if c in r.values]
    sealed = iter(sealer.encrypt_many(plain))
    pos = 0
    for r in records:
        end = pos + 1 + len(r.idents)
        r.new_ids = ids[pos:end]
        pos = end
        r.sealed = [next(sealed) for _ in r.idents]
    for r in records:
        vals = r.values
        r.sealed_values = {c: next(sealed) for c in _SEALED if c in vals}


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
_SEALED = ("birthday", "address")
CONTACT_COLUMNS = (
    "id",
    "created_at",
    "updated_at",
    *COLUMNS,
    "attributes",
    "phone_tail",
)
IDENTITY_COLUMNS = ("id", "contact_id", "kind", "value", "value_index", "is_primary", "created_at")


def uuid7_hex(n: int) -> list[str]:
    """``n`` time-ordered UUIDs (RFC 9562 version 7, 42-bit counter method) as 32 hex digits.

    One clock read and one OS random draw per call: the counter starts at a random value and
    runs over ``rand_a`` and the top of ``rand_b``; the low 32 bits are random per id. The ids
    are laid out as 32-bit words in one array (the same first two words for all, then the
    counter, then the random word) and turned into hex at once, with a separator every 16 bytes
    to split at (ten times faster than formatting each id, a third less than slicing the hex).
    """
    ms = time.time_ns() // 1_000_000
    start = int.from_bytes(os.urandom(6)) >> 7  # 41 bits: the counter cannot overflow 42
    hi_base = ((ms & 0xFFFFFFFFFFFF) << 16) | 0x7000  # unix_ts_ms | version 7
    # rand_a = counter bits 41..30; rand_b = variant 0b10, counter bits 29..0, 32 random bits
    if n <= 0:
        return []
    if start >> 30 != (start + n - 1) >> 30:  # rand_a changes within this call: id by id
        rnd = os.urandom(4 * n).hex()
        return [
            f"{hi_base | ((start + k) >> 30):016x}{0x80000000 | ((start + k) & 0x3FFFFFFF):08x}{rnd[8 * k : 8 * k + 8]}"
            for k in range(n)
        ]
    words = array.array("I", os.urandom(16 * n))
    first, second = array.array("I", (hi_base | (start >> 30)).to_bytes(8, "big"))
    words[0::4] = array.array("I", [first]) * n
    words[1::4] = array.array("I", [second]) * n
    low = 0x80000000 | (start & 0x3FFFFFFF)
    counter = array.array("I", range(low, low + n))
    if sys.byteorder == "little":
        counter.byteswap()
    words[2::4] = counter
    return words.tobytes().hex(" ", -16).split(" ")  # hex split every 16 bytes, in C


class CreatedIds:
    """The ids (32 hex digits) of the contacts an import run created, asked only for the few
    contacts a later row meets. A chunk's ids come from one :func:`uuid7_hex` call, so they are
    in increasing order and share its millisecond: they are kept as that list (found by its
    millisecond, then bisected) instead of being hashed into a set one by one (a million-row
    file: ~0.2 s and ~100 MB less). Other ids (the row-by-row path) go to a set."""

    def __init__(self) -> None:
        self._runs: dict[str, list[list[str]]] = {}  # the ids' first 12 digits (ms) → sorted lists
        self._other: set[str] = set()
        self._gone: set[str] = set()  # ids of a sorted list that were not created after all

    def add_sorted(self, ids: list[str]) -> None:
        """Ids in increasing order that share their first 12 hex digits (one ``uuid7_hex`` call);
        otherwise they are added one by one."""
        if not ids:
            return
        if ids[0][:12] != ids[-1][:12]:
            self._other.update(ids)
            return
        self._runs.setdefault(ids[0][:12], []).append(ids)

    def update(self, ids: Iterable[str]) -> None:
        self._other.update(ids)

    def difference_update(self, ids: Iterable[str]) -> None:
        for cid in ids:
            self._other.discard(cid)
            self._gone.add(cid)

    def __contains__(self, cid: object) -> bool:
        if not isinstance(cid, str) or cid in self._gone:
            return False
        if cid in self._other:
            return True
        for ids in self._runs.get(cid[:12], ()):
            at = bisect.bisect_left(ids, cid)
            if at < len(ids) and ids[at] == cid:
                return True
        return False


@dataclass
class ImportRun:
    """What one import run remembers between chunks."""

    source: str = "import"
    created: CreatedIds = field(default_factory=lambda: CreatedIds())  # contact ids (hex) it created
    created_count: int = 0
    updated_count: int = 0
    duplicates: int = 0
    # Set when the tenant had no identity at all as the run started: then only identities this
    # run wrote can exist, and only those the filter may hold are looked up (see write_chunk).
    written: IdentityFilter | None = None


def index_bytes(indexes: list[str]) -> bytes:
    """16 bytes per blind index, decoded from its 32 hex digits at once; any other string (tests)
    gives its BLAKE2b-128 instead, one by one, so an index gives the same bytes in any batch."""
    joined = "".join(indexes)
    if len(joined) == 32 * len(indexes):
        with contextlib.suppress(ValueError):
            return bytes.fromhex(joined)
    return b"".join([_index_bytes(i) for i in indexes])


def _index_bytes(index: str) -> bytes:
    if len(index) == 32:
        with contextlib.suppress(ValueError):
            return bytes.fromhex(index)
    return hashlib.blake2b(index.encode(), digest_size=16).digest()


class IdentityFilter:
    """A Bloom filter (two probes, about 16 bits per blind index) of the identities an import
    run wrote.

    Never misses one it was given; answers "maybe" for about 1.5% of the others at the size
    :meth:`sized` picks, which only costs those a lookup. Blind indexes are HMAC outputs, so
    their first two 32-bit words are already uniformly random: they are the probes. A chunk's
    indexes are checked and added at once, as numpy arrays (one hex decoding, then a gather and
    a scatter over the bits): ~0.07 us per index, against ~0.6 for the same work through
    ``itemgetter``/``compress`` over one-byte slots and a Python loop to set them. Its bits fit
    in 4 MB for a million-row file (the one-byte slots took 32 MB, two cache misses a check).
    """

    def __init__(self, bits: int) -> None:
        self.mask = (1 << max(bits - 1, 255).bit_length()) - 1
        self.bits = np.zeros((self.mask + 1) >> 3, dtype=np.uint8)

    @classmethod
    def sized(cls, identities: int) -> IdentityFilter:
        return cls(min(16 * max(identities, 1 << 16), 1 << 28))

    def _probes(self, indexes: list[str], raw: bytes | None = None) -> tuple[Any, Any, Any, Any]:
        """Per index and probe: the byte holding its bit, and the bit within that byte (``raw``:
        :func:`index_bytes` of ``indexes``, when the caller has it)."""
        raw = index_bytes(indexes) if raw is None else raw
        words = np.frombuffer(raw, dtype=np.uint32)
        first, second = words[0::4] & self.mask, words[1::4] & self.mask
        one = np.uint8(1)
        return (
            first >> 3,
            one << (first & 7).astype(np.uint8),
            second >> 3,
            one << (second & 7).astype(np.uint8),
        )

    def _hits(self, probes: tuple[Any, Any, Any, Any]) -> list[int]:
        at1, bit1, at2, bit2 = probes
        bits = self.bits
        hit = ((bits[at1] & bit1) != 0) & ((bits[at2] & bit2) != 0)
        return cast(list[int], np.flatnonzero(hit).tolist())

    def _set(self, probes: tuple[Any, Any, Any, Any]) -> None:
        at1, bit1, at2, bit2 = probes
        np.bitwise_or.at(self.bits, at1, bit1)  # .at: an index may repeat within the batch
        np.bitwise_or.at(self.bits, at2, bit2)

    def add_many(self, indexes: list[str]) -> None:
        if indexes:
            self._set(self._probes(indexes))

    def maybe(self, indexes: list[str]) -> list[int]:
        """Positions in ``indexes`` of those that may have been added."""
        if not indexes:
            return []
        return self._hits(self._probes(indexes))

    def check_and_add(self, indexes: list[str], raw: bytes | None = None) -> list[int]:
        """:meth:`maybe` then :meth:`add_many` of the same indexes, with one decoding of them
        (``raw``: their :func:`index_bytes`, when the caller has it)."""
        if not indexes:
            return []
        probes = self._probes(indexes, raw)
        out = self._hits(probes)
        self._set(probes)
        return out

    def add(self, index: str) -> None:
        self.add_many([index])

    def __contains__(self, index: str) -> bool:
        return bool(self.maybe([index]))


@dataclass
class ChunkResult:
    created: int
    updated: int
    duplicates: list[Problem]
    ids: list[str]  # contact id (hex) per record


async def write_chunk(
    session: AsyncSession, records: list[Record], run: ImportRun | None = None
) -> ChunkResult:
    """Insert new contacts and fill existing ones for one prepared chunk.

    An identity already owned by a contact this run created (an earlier chunk of the same file)
    makes the record a duplicate in the file: it only fills the gaps of that contact. The run's
    memory is updated only after every statement succeeded, so a retried chunk starts clean.
    """
    run = run if run is not None else ImportRun()
    repo = ContactRepository(session)
    probes = [(k, i) for r in records for k, _, i in r.idents]
    written = run.written
    if written is not None:  # nothing existed before the run: only what it wrote can be found
        probes = [p for p in probes if p[1] in written]
    found = await repo.owners_of_indexes(probes)
    owners: dict[tuple[str, str], str] = {key: cid.hex for key, cid in found.items()}
    sealer = get_keyring().sealer(context.current_tenant_id())
    now = utcnow()
    # one id per contact and identity at most (unless drawn ahead), one time-ordered sequence
    new_ids = iter(uuid7_hex(sum(1 + len(r.idents) for r in records if r.new_ids is None)))
    contacts: list[tuple[Any, ...]] = []
    idents: list[tuple[Any, ...]] = []
    updates: list[dict[str, Any]] = []
    fills: list[dict[str, Any]] = []
    dups: list[Problem] = []
    ids: list[str] = []
    created_now: set[str] = set()
    updated = 0
    encrypt = sealer.encrypt
    source = run.source
    for r in records:
        existing = None
        for k, _, i in r.idents:
            existing = owners.get((k, i))
            if existing is not None:
                break
        vals = r.values
        sealed = r.sealed or [encrypt(v) for _, v, _ in r.idents]
        ids_of = new_ids if r.new_ids is None else iter(r.new_ids)
        if existing is None:
            cid = next(ids_of)
            phone = None
            seen: set[str] = set()
            for (k, v, i), sv in zip(r.idents, sealed, strict=True):
                if phone is None and k == "phone":
                    phone = v
                idents.append((next(ids_of), cid, k, sv, i, k not in seen, now))
                seen.add(k)
                owners[(k, i)] = cid
            sv_ = r.sealed_values
            if sv_ is None:
                sv_ = {c: encrypt(vals[c]) for c in _SEALED if c in vals}
            contacts.append(
                (
                    cid,
                    now,
                    now,
                    vals.get("name"),
                    vals.get("given_name"),
                    vals.get("family_name"),
                    vals.get("gender"),
                    sv_.get("birthday"),
                    sv_.get("address"),
                    vals.get("city"),
                    vals.get("language"),
                    vals.get("source") or source,
                    vals.get("lifecycle_stage") or "lead",
                    r.attributes,
                    phone[-4:] if phone else None,
                )
            )
            created_now.add(cid)
        else:
            cid = existing
            row = {"b_id": uuid.UUID(cid), "b_now": now, "b_attributes": r.attributes or None}
            for c in COLUMNS:
                row[f"b_{c}"] = vals.get(c)
            if cid in run.created or cid in created_now:  # an earlier row of this file
                fills.append(row)
                dups.append(_dup_note(r, "same identity as an earlier row; merged into it"))
            else:
                updates.append(row)
                updated += 1
            for (k, _, i), sv in zip(r.idents, sealed, strict=True):
                if (k, i) not in owners:
                    idents.append((next(ids_of), cid, k, sv, i, False, now))
                    owners[(k, i)] = cid
        ids.append(cid)
    await repo.insert_contacts_with_identities(CONTACT_COLUMNS, contacts, IDENTITY_COLUMNS, idents)
    await repo.update_from_import(updates, COLUMNS, fill_only=False)
    await repo.update_from_import(fills, COLUMNS, fill_only=True)
    await _tag_records(session, records, ids)
    run.created.update(created_now)
    if written is not None:
        written.add_many([ident[4] for ident in idents])
    run.created_count += len(contacts)
    run.updated_count += updated
    run.duplicates += len(dups)
    return ChunkResult(len(contacts), updated, dups, ids)


async def upsert_batch(
    session: AsyncSession, records: list[Record], *, source: str = "import"
) -> tuple[int, int, list[uuid.UUID]]:
    """Insert new contacts and fill existing ones; (created, updated, contact ids per record)."""
    res = await write_chunk(session, records, ImportRun(source=source))
    return res.created, res.updated, [uuid.UUID(i) for i in res.ids]


async def _tag_records(session: AsyncSession, records: list[Record], ids: list[str]) -> None:
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
    now = utcnow()
    pairs = {(uuid.UUID(cid), existing[t]) for r, cid in zip(records, ids, strict=True) for t in r.tags}
    contact_ids = list({p[0] for p in pairs})
    have: set[tuple[uuid.UUID, uuid.UUID]] = set()
    for i in range(0, len(contact_ids), 500):
        stmt = select(ContactTag.contact_id, ContactTag.tag_id).where(
            ContactTag.contact_id.in_(contact_ids[i : i + 500])
        )
        have.update((a, b) for a, b in (await session.execute(stmt)).all())
    rows = [
        {"contact_id": c, "tag_id": t, "source": "import", "created_at": now}
        for c, t in pairs
        if (c, t) not in have
    ]
    if rows:
        await session.execute(insert(ContactTag), rows)


def chunks(items: list[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


async def field_defs(session: AsyncSession) -> dict[str, FieldDefinition]:
    return await FieldRepository(session).for_object("contact")


class ErrorFile:
    """The error report (UTF-8 CSV with BOM: row, the row's cells, the reasons), written as
    chunks are processed; created at the first problem."""

    def __init__(self, path: Path, headers: list[str], *, append: bool = False) -> None:
        self.path = path
        self.headers = headers
        self._append = append and path.exists()
        self._fh: io.TextIOWrapper | None = None

    def add(self, rows: Chunk, problems: list[Problem]) -> None:
        if not problems:
            return
        if self._fh is None:
            self._fh = self.path.open("a" if self._append else "w", encoding="utf-8", newline="")
            if not self._append:
                self._fh.write("\ufeff")
                csv.writer(self._fh).writerow(["row", *self.headers, "errors"])
        by_row: dict[int, list[Problem]] = {}
        for p in problems:
            by_row.setdefault(p.row, []).append(p)
        first = rows[0][0] if rows else 0
        cells: dict[int, list[str]] | None = None
        w = csv.writer(self._fh)
        for row_no in sorted(by_row):
            reasons = "; ".join(f"{p.field}: {p.rule}: {p.message}" for p in by_row[row_no])
            at = row_no - first  # a chunk's rows are numbered one after the other
            if 0 <= at < len(rows) and rows[at][0] == row_no:
                row = rows[at][1]
            else:  # (not a chunk of read_chunks: looked up by number)
                cells = dict(rows) if cells is None else cells
                row = cells.get(row_no, [])
            w.writerow([row_no, *row, reasons])
        self._fh.flush()

    @property
    def written(self) -> bool:
        return self._fh is not None or self._append

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()


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
