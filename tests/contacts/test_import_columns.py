"""The column-by-column validation of plain chunks (contacts/import_columns.py) gives exactly what
the row-by-row path gives: the same records, problems (same order) and in-file duplicates, and
the same prepared statements; other chunks are left to the row-by-row path."""

from __future__ import annotations

import os
import random
import uuid
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from tessera.contacts import import_bulk, importer
from tessera.contacts.import_columns import validate_columns
from tessera.core.crypto.keyring import Sealer, TenantKeys

TARGETS = {
    "Name": "name",
    "Mobile": "phone",
    "Email": "email",
    "City": "city",
    "Gender": "gender",
    "Birthday": "birthday",
    "Stage": "lifecycle_stage",
    "Given": "given_name",
    "Family": "family_name",
    "Address": "address",
    "Language": "language",
    "Source": "source",
}


def _sealer() -> Sealer:
    return Sealer(uuid.uuid4(), TenantKeys(1, {1: AESGCM(os.urandom(32))}, os.urandom(32), 0.0))


def _cell(rnd: random.Random, target: str, pool: dict[str, list[str]]) -> str:
    r = rnd.random()
    if r < 0.12:
        return ""
    if target in pool and pool[target] and r < 0.3:  # repeats an earlier value: duplicates
        return rnd.choice(pool[target])
    if target == "phone":
        v = rnd.choice(
            [
                f"13{rnd.randrange(10)}{rnd.randrange(10**8):08d}",
                f"140{rnd.randrange(10**8):08d}",
                "12345",
                f"+86 138 {rnd.randrange(10**4):04d} {rnd.randrange(10**4):04d}",
                "abc",
                f"0{rnd.randrange(10**9)}",
                "１３８００１３８０００",
            ]
        )
    elif target == "email":
        v = rnd.choice(
            [
                f"u{rnd.randrange(500)}@example.com",
                f"U{rnd.randrange(500)}@Example.COM",
                "bad@",
                "a b@c.d",
                f"x{rnd.randrange(50)}@y.cn",
                "@b.c",
            ]
        )
    elif target == "gender":
        v = rnd.choice(["男", "女", "M", "f", "Female", "other", "unknown", "其他"])
    elif target == "birthday":
        v = rnd.choice(
            ["1990-01-02", "1990/1/2", "1991.02.03", "1990-13-45", "abc", "2000-02-29", "1999-02-29"]
        )
    elif target == "lifecycle_stage":
        v = rnd.choice(["lead", "Customer", "churned", "vip", "SUBSCRIBER"])
    elif target == "name":
        v = rnd.choice(["客户", "Ann", "x" * 250, "李 雷"]) + str(rnd.randrange(100))
    else:
        v = rnd.choice(["上海", "北京", "y" * 150, "en", "web", "路 1 号"])
    pool.setdefault(target, []).append(v)
    return v


def _chunk(seed: int, headers: list[str], n: int) -> importer.Chunk:
    rnd = random.Random(seed)
    pool: dict[str, list[str]] = {}
    return [(k + 2, [_cell(rnd, TARGETS[h], pool) for h in headers]) for k in range(n)]


def _headers(seed: int) -> list[str]:
    rnd = random.Random(seed)
    others = [h for h in TARGETS if h != "Name"]
    chosen = ["Name", *rnd.sample(others, rnd.randint(1, len(others)))]
    rnd.shuffle(chosen)
    return chosen


@pytest.mark.parametrize("seed", range(40))
def test_columns_give_the_row_by_row_answer(seed: int) -> None:
    headers = _headers(seed)
    validator = importer.RowValidator(headers, {h: TARGETS[h] for h in headers}, {}, "CN", _sealer())
    rows = _chunk(seed, headers, 300)
    want_records, want_problems, want_dups = importer.validate_chunk(validator, rows)
    cols = validate_columns(validator, rows)
    assert cols is not None
    from tessera.contacts.import_columns import LazyRecords

    assert list(LazyRecords(cols)) == want_records
    assert cols.problems == want_problems
    assert cols.duplicates == want_dups


def _deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = iter(range(10**9))
    monkeypatch.setattr(import_bulk, "uuid7_hex", lambda n: [f"{next(counter):032x}" for _ in range(n)])
    monkeypatch.setattr(Sealer, "encrypt_many", lambda self, xs: [f"sealed:{x}" for x in xs])


@pytest.mark.parametrize("seed", range(12))
def test_prepared_statements_are_the_same(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    headers = _headers(100 + seed)
    validator = importer.RowValidator(headers, {h: TARGETS[h] for h in headers}, {}, "CN", _sealer())
    rows = _chunk(100 + seed, headers, 400)
    outs: list[Any] = []
    for columns in (True, False):
        _deterministic(monkeypatch)
        if not columns:
            monkeypatch.setattr(import_bulk, "validate_columns", lambda v, r: None)
        seen = importer.IdentityFilter.sized(1000)
        seen.add_many([validator.index("phone", "+8613000000000")])
        outs.append(import_bulk.prepare_bulk(validator, rows, seen, "import"))
    fast, slow = outs
    assert list(fast.records) == slow.records
    assert (fast.problems, fast.duplicates, fast.has_tags) == (slow.problems, slow.duplicates, slow.has_tags)
    for name in ("contact_ids", "ident_start", "kinds", "indexes", "sealed", "owner_pos", "probes"):
        assert getattr(fast, name) == getattr(slow, name), name
    if slow.insert is None:
        assert fast.insert is None
        return
    for a, b in (
        (fast.insert.contacts, slow.insert.contacts),
        (fast.insert.identities, slow.insert.identities),
    ):
        assert a.sql() == b.sql() and a.params == b.params


@pytest.mark.parametrize(
    ("headers", "mapping", "cells"),
    [
        (["Name", "Tags"], {"Name": "name", "Tags": "tags"}, ["A", "vip"]),
        (["Name", "Mobile"], {"Name": "name", "Mobile": "phone"}, ["A", "13800138000;13800138001"]),
        (["Name", "Email"], {"Name": "name", "Email": "email"}, ["A", "a@b.cn,c@d.cn"]),
        (["Name", "M1", "M2"], {"Name": "name", "M1": "phone", "M2": "phone"}, ["A", "13800138000", ""]),
        (["Name", "Level"], {"Name": "name", "Level": "attributes.level"}, ["A", "3"]),
    ],
)
def test_other_chunks_take_the_row_by_row_path(
    headers: list[str], mapping: dict[str, str], cells: list[str]
) -> None:
    defs: dict[str, Any] = {}
    if "Level" in headers:

        class Level:
            key, label, type, choices, required = "level", "Level", "number", [], False

        defs = {"level": Level()}
    validator = importer.RowValidator(headers, mapping, defs, "CN", _sealer())
    assert validate_columns(validator, [(2, cells)]) is None
    assert validate_columns(validator, [(2, ["A"])]) is None  # a short row


def test_required_custom_fields_take_the_row_by_row_path() -> None:
    class Level:
        key, label, type, choices, required = "level", "Level", "number", [], True

    validator = importer.RowValidator(["Name"], {"Name": "name"}, {"level": Level()}, "CN", _sealer())  # type: ignore[dict-item]
    assert validate_columns(validator, [(2, ["A"])]) is None


@pytest.mark.parametrize(
    "headers", [["Name", "Mobile", "Email", "City"], ["Email", "Name"], ["Name", "City"]]
)
def test_rows_with_every_identity_give_the_row_by_row_answer(headers: list[str]) -> None:
    """Every row has a valid value in every identity column (the column-wise identity lists),
    with duplicates in the chunk and a bad row (left out before the identities are made)."""
    rnd = random.Random(len(headers))
    validator = importer.RowValidator(headers, {h: TARGETS[h] for h in headers}, {}, "CN", _sealer())
    values = {
        "Name": lambda k: f"客户{k}",
        "Mobile": lambda k: f"138{rnd.randrange(40):08d}",
        "Email": lambda k: f"u{rnd.randrange(40)}@example.com",
        "City": lambda k: rnd.choice(["上海", ""]),
    }
    rows = [(k + 2, [values[h](k) for h in headers]) for k in range(200)]
    rows[5][1][headers.index("Name")] = ""  # a bad row
    want_records, want_problems, want_dups = importer.validate_chunk(validator, rows)
    cols = validate_columns(validator, rows)
    assert cols is not None
    from tessera.contacts.import_columns import LazyRecords

    assert list(LazyRecords(cols)) == want_records
    assert cols.problems == want_problems and len(want_problems) == 1
    assert cols.duplicates == want_dups
    assert bool(want_dups) == ("Mobile" in headers or "Email" in headers)
