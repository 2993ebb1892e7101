"""The PostgreSQL array literals of the bulk import: the fast paths (one join) give exactly what
quoting every element gives, NULLs and characters that need escaping included."""

from __future__ import annotations

import random
import uuid

from tessera.contacts.repository import _pg_array_literal, _quote


def _reference(values: list[str | None]) -> str:
    return "{" + ",".join(["NULL" if v is None else _quote(v) for v in values]) + "}"


def test_text_literals_match_element_by_element_quoting() -> None:
    rnd = random.Random(11)
    pool = [None, "", "a", "NULL", 'x"y', "b\\c", "中文", "\0", "p q", "{,}", '"', "\\"]
    for _ in range(5000):
        values = [rnd.choice(pool) for _ in range(rnd.randint(1, 7))]
        assert _pg_array_literal(values, "text") == _reference(values), values


def test_uuid_literals_take_hex_text_and_uuids() -> None:
    ids = [uuid.uuid4() for _ in range(3)]
    assert _pg_array_literal([i.hex for i in ids], "uuid") == "{" + ",".join(i.hex for i in ids) + "}"
    assert _pg_array_literal([ids[0], None], "uuid") == "{" + str(ids[0]) + ",NULL}"


def test_plain_text_takes_the_one_join_path(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tessera.contacts import repository

    quoted: list[str] = []
    monkeypatch.setattr(repository, "_quote", lambda s: quoted.append(s) or _quote(s))
    assert _pg_array_literal(["v1.ab+/=", None, "客户1", ""], "text") == '{"v1.ab+/=",NULL,"客户1",""}'
    assert quoted == []
    assert _pg_array_literal(['a"b', "c"], "text") == '{"a\\"b","c"}'
    assert quoted == ['a"b', "c"]
