"""Route matching, shared by the dispatcher and the console's lookup tester (no database here).

A route row names a message class (``None`` = any class), a carrier (``"*"`` = any) and a number
prefix (``None`` = any, e.g. ``+86`` or ``+8613``, matched against the E.164 recipient). The rows
that match a message are ranked, most specific first:

1. class-specific rows before any-class rows;
2. then rows naming the carrier (the number's carrier after portability) before the others;
3. then the longest prefix; the catch-all (``"*"``, no prefix) is last.

The rows of the best rank are the route: lower ``priority`` first, entries of one priority
shuffled by ``weight``. The matching rows of the lower ranks follow as failover, in rank order
(so the catch-all remains the last failover, as it always was). A link appears once.

Source address rules (``Link.source_rules``): ``{"allowed": ["10690001", "1069*"]}`` lists the
source addresses a link may send from, exactly or by a prefix ending in ``*``; no list = any.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

ANY = "*"
PREFIX_RE = re.compile(r"^\+[1-9][0-9]{0,14}$")
SOURCE_RE = re.compile(r"^[A-Za-z0-9+ ._-]{1,21}\*?$")


class RouteRow(NamedTuple):
    priority: int
    carrier: str
    link_id: uuid.UUID
    weight: int
    prefix: str | None = None
    message_class: str | None = None


def _rank(row: RouteRow, carrier: str, number: str, message_class: str | None) -> tuple[int, int, int] | None:
    """Sort key of a matching row (smaller = more specific), ``None`` when it does not match."""
    if row.message_class is not None and row.message_class != message_class:
        return None
    if row.carrier != ANY and row.carrier != carrier:
        return None
    if row.prefix and not number.startswith(row.prefix):
        return None
    return (
        0 if row.message_class is not None else 1,
        0 if row.carrier != ANY else 1,
        -len(row.prefix or ""),
    )


def ranked(
    entries: Iterable[Sequence[Any]], carrier: str, number: str = "", message_class: str | None = None
) -> list[list[RouteRow]]:
    """The matching rows grouped by rank, most specific group first."""
    groups: dict[tuple[int, int, int], list[RouteRow]] = {}
    for e in entries:
        row = e if isinstance(e, RouteRow) else RouteRow(*e)
        key = _rank(row, carrier, number, message_class)
        if key is not None:
            groups.setdefault(key, []).append(row)
    return [groups[k] for k in sorted(groups)]


def order(groups: list[list[RouteRow]], *, shuffle: bool = True) -> list[RouteRow]:
    """Rows to try in order: per group by priority, weighted within a priority; one per link."""
    out: list[RouteRow] = []
    seen: set[uuid.UUID] = set()
    for group in groups:
        for prio in sorted({r.priority for r in group}):
            same = [r for r in group if r.priority == prio]
            if shuffle:
                picked = []
                while same:
                    pick = random.choices(same, weights=[r.weight for r in same])[0]
                    same.remove(pick)
                    picked.append(pick)
            else:
                picked = sorted(same, key=lambda r: -r.weight)
            for r in picked:
                if r.link_id not in seen:
                    seen.add(r.link_id)
                    out.append(r)
    return out


def describe(row: RouteRow | None) -> dict[str, Any] | None:
    """What is recorded on a message as the route rule that decided it."""
    if row is None:
        return None
    return {"class": row.message_class, "carrier": row.carrier, "prefix": row.prefix}


def source_allowed(rules: Mapping[str, Any] | None, source: str) -> bool:
    """Whether a link with these source address rules may send from ``source``."""
    allowed = (rules or {}).get("allowed")
    if not allowed:
        return True
    for pattern in allowed:
        p = str(pattern)
        if p.endswith("*") and source.startswith(p[:-1]):
            return True
        if p == source:
            return True
    return False
