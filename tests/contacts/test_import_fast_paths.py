"""The import's fast paths give exactly what the slow ones give: email check without the regex,
remembered birthdays, ids laid out as words (and id by id when the counter's top bits change)."""

from __future__ import annotations

import datetime as dt
import itertools
import random
import re
import sys
import uuid

import pytest


def test_email_check_equals_the_regex() -> None:
    from tessera.contacts.dedupe import _EMAIL, _email_ok

    for size in range(7):
        for combo in itertools.product(["a", "@", ".", " ", "\xa0", "中", "\n"], repeat=size):
            v = "".join(combo)
            assert _email_ok(v) == (_EMAIL.match(v) is not None), repr(v)
    rnd = random.Random(5)
    pool = ["a", "B", "@", ".", " ", "\t", "\n", "\xa0", "\u2003", "\x1c", "\x85", "\u200b", "中", "-", "+"]
    pool += ["\u3000", "\x00", "\u2028", "é", "..", "@@", "user", "example", "com"]
    for _ in range(100_000):
        v = "".join(rnd.choice(pool) for _ in range(rnd.randint(0, 10)))
        assert _email_ok(v) == (_EMAIL.match(v) is not None), repr(v)


def test_every_whitespace_but_the_space_is_unprintable() -> None:
    """What the email fast path relies on (true of this Python's Unicode tables)."""
    space = re.compile(r"\s")
    for c in map(chr, range(sys.maxunicode + 1)):
        if space.match(c):
            assert c == " " or not c.isprintable(), hex(ord(c))


def test_normalize_email_keeps_its_answers() -> None:
    from tessera.contacts.dedupe import normalize_email
    from tessera.core.http.errors import InvalidInput

    assert normalize_email("  User@Example.COM ") == "user@example.com"
    for bad in ("a@b", "a@.b", "a@b.", "@b.c", "a b@c.d", "a@b@c.d", "a@b.c\u3000x", "x" * 321 + "@b.c"):
        with pytest.raises(InvalidInput):
            normalize_email(bad)


def test_remembered_dates_equal_parsing_each_time() -> None:
    from tessera.contacts import importer
    from tessera.core.http.errors import InvalidInput

    cells = ["1990-01-02", "1990/1/2", "1990.01.02", "19900102", "1990-13-45", "1990-02-29", "2000-02-29"]
    cells += ["", "abc", "1990-1-2", "2024-W01-1", "1990/01/02"]
    for _ in range(2):  # the second pass answers from memory
        for cell in cells:
            try:
                want: str | None = dt.date.fromisoformat(cell.replace("/", "-").replace(".", "-")).isoformat()
            except ValueError:
                want = None
            if want is None:
                with pytest.raises(InvalidInput) as err:
                    importer._date(cell)
                assert err.value.field == "birthday"
            else:
                assert importer._date(cell) == want


@pytest.mark.parametrize("start", [None, (1 << 30) - 3])
def test_uuid7_ids_are_ordered_version_7(monkeypatch: pytest.MonkeyPatch, start: int | None) -> None:
    import os

    from tessera.contacts import importer

    if start is not None:  # the counter's top bits change within the call: the id-by-id path
        real = os.urandom
        draws = iter([(start << 7).to_bytes(6, "big")])
        monkeypatch.setattr(importer.os, "urandom", lambda k: next(draws, None) or real(k))
    ids = importer.uuid7_hex(1000)
    assert len(set(ids)) == 1000 and ids == sorted(ids)
    for h in ids:
        u = uuid.UUID(h)
        assert len(h) == 32 and u.version == 7 and u.variant == uuid.RFC_4122
    if start is not None:
        assert ids[0][12:16] != ids[-1][12:16]  # rand_a moved on


def test_prompt_handoff_is_restored_by_its_last_user() -> None:
    from tessera.contacts.importer import prompt_handoff

    before = sys.getswitchinterval()
    with prompt_handoff(0.0005):
        assert sys.getswitchinterval() == pytest.approx(min(0.0005, before))
        with prompt_handoff(0.0005):
            pass
        assert sys.getswitchinterval() == pytest.approx(min(0.0005, before))  # still running
    assert sys.getswitchinterval() == before
