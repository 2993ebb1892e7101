"""Segment rules compiled to ONE SQL query over contacts (EXISTS subqueries).

Rule tree::

    {"op": "and"|"or", "rules": [<node>, ...]}
    {"type": "attribute", "field": "city"|"lifecycle_stage"|…|"attributes.<key>", "op": OP, "value": …}
    {"type": "account", "field": "industry"|"size"|"region"|"name"|"attributes.<key>", "op": OP, "value": …}
    {"type": "tag", "match": "any"|"all"|"none", "tag_ids": [...]}
    {"type": "event", "name": "purchase", "where": [{"property": "sku", "op": OP, "value": …}],
     "within_days": 30 | "from": iso, "to": iso, "count_op": "gte"|"lte"|"eq"|"gt"|"lt", "count": 1}
    {"type": "consent", "channel": "sms", "status": "opted_in"|"opted_out"|"unknown"}
    {"type": "lifecycle", "in": ["lead", "customer"]}
    {"type": "segment", "segment_id": "…"}   (static list or materialised membership)

OP: eq, neq, in, contains, gt, lt, between, is_set.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement as CE

from tessera.contacts.errors import InvalidSegmentRule
from tessera.contacts.models import (
    CONSENT_CHANNELS,
    LIFECYCLE_STAGES,
    Account,
    Contact,
    ContactConsent,
    ContactEvent,
    ContactTag,
    SegmentMember,
)
from tessera.core.db.base import utcnow

CONTACT_COLUMNS = {
    "name": Contact.name,
    "given_name": Contact.given_name,
    "family_name": Contact.family_name,
    "gender": Contact.gender,
    "city": Contact.city,
    "language": Contact.language,
    "source": Contact.source,
    "lifecycle_stage": Contact.lifecycle_stage,
    "owner_id": Contact.owner_id,
    "account_id": Contact.account_id,
    "created_at": Contact.created_at,
}
ACCOUNT_COLUMNS = {
    "name": Account.name,
    "industry": Account.industry,
    "size": Account.size,
    "region": Account.region,
}
OPS = ("eq", "neq", "in", "contains", "gt", "lt", "between", "is_set")
MAX_DEPTH = 6
MAX_NODES = 100


def _bad(msg: str, path: str) -> InvalidSegmentRule:
    return InvalidSegmentRule(msg, field=f"rules{path}")


def _json_path(attrs: Any, key: str, value: Any) -> ColumnElement[Any]:
    node = attrs[key]
    if isinstance(value, bool):
        return node.as_boolean()
    if isinstance(value, (int, float)):
        return node.as_float()
    return node.as_string()


def _compare(col_for: Any, op: str, value: Any, path: str) -> ColumnElement[bool]:
    """``col_for(sample_value)`` gives the column typed for the comparison value."""
    if op not in OPS:
        raise _bad(f"unknown operator '{op}'; use one of {', '.join(OPS)}", path + ".op")
    if op == "is_set":
        col = col_for("")
        return col.is_not(None) if value in (None, True) else col.is_(None)
    if op == "in":
        if not isinstance(value, list) or not value:
            raise _bad("'in' needs a non-empty list", path + ".value")
        return col_for(value[0]).in_(value)
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise _bad("'between' needs [low, high]", path + ".value")
        return col_for(value[0]).between(value[0], value[1])
    if isinstance(value, (list, dict)) or value is None:
        raise _bad(f"'{op}' needs a scalar value", path + ".value")
    col = col_for(value)
    if op == "eq":
        return col == value
    if op == "neq":
        return or_(col != value, col.is_(None))
    if op == "contains":
        s = str(value).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return col.ilike(f"%{s}%", escape="\\")
    if op == "gt":
        return col > value
    return col < value


def _field(model_cols: dict[str, Any], attrs: Any, field: str, path: str) -> Any:
    if field.startswith("attributes."):
        key = field.split(".", 1)[1]
        if not key:
            raise _bad("attributes.<key> needs a key", path + ".field")
        return lambda v: _json_path(attrs, key, v)
    col = model_cols.get(field)
    if col is None:
        raise _bad(f"unknown field '{field}'", path + ".field")
    return lambda v: col


def _time(value: Any, path: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(str(value))
    except ValueError:
        raise _bad(f"'{value}' is not an ISO date-time", path) from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _uuids(values: Any, path: str) -> list[uuid.UUID]:
    if not isinstance(values, list) or not values:
        raise _bad("needs a non-empty list of ids", path)
    try:
        return [uuid.UUID(str(v)) for v in values]
    except ValueError:
        raise _bad("not a valid id", path) from None


def compile_rules(rule: dict[str, Any], *, now: dt.datetime | None = None) -> ColumnElement[bool]:
    """A WHERE clause over :class:`Contact` for ``rule``; 422 naming the bad node otherwise."""
    counter = [0]
    return _compile(rule, "", 0, counter, now or utcnow())


def _compile(node: Any, path: str, depth: int, counter: list[int], now: dt.datetime) -> ColumnElement[bool]:
    if not isinstance(node, dict):
        raise _bad("a rule must be an object", path)
    counter[0] += 1
    if counter[0] > MAX_NODES or depth > MAX_DEPTH:
        raise _bad(f"rules are limited to {MAX_NODES} nodes and depth {MAX_DEPTH}", path)
    if "op" in node and "rules" in node:
        if node["op"] not in ("and", "or"):
            raise _bad("group op must be 'and' or 'or'", path + ".op")
        if not isinstance(node["rules"], list):
            raise _bad("rules must be a list", path + ".rules")
        parts = [
            _compile(r, f"{path}.rules[{i}]", depth + 1, counter, now) for i, r in enumerate(node["rules"])
        ]
        if not parts:
            return true() if node["op"] == "and" else false()
        return and_(*parts) if node["op"] == "and" else or_(*parts)
    kind = node.get("type")
    if kind == "attribute":
        col = _field(CONTACT_COLUMNS, Contact.attributes, str(node.get("field", "")), path)
        return _compare(col, node.get("op", "eq"), node.get("value"), path)
    if kind == "account":
        col = _field(ACCOUNT_COLUMNS, Account.attributes, str(node.get("field", "")), path)
        cond = _compare(col, node.get("op", "eq"), node.get("value"), path)
        return exists(select(Account.id).where(Account.id == Contact.account_id, cond))
    if kind == "lifecycle":
        stages = node.get("in")
        if not isinstance(stages, list) or not stages or any(s not in LIFECYCLE_STAGES for s in stages):
            raise _bad(f"'in' must list stages among {', '.join(LIFECYCLE_STAGES)}", path + ".in")
        return Contact.lifecycle_stage.in_(stages)
    if kind == "consent":
        channel, status = node.get("channel"), node.get("status")
        if channel not in CONSENT_CHANNELS:
            raise _bad(f"channel must be one of {', '.join(CONSENT_CHANNELS)}", path + ".channel")
        if status not in ("opted_in", "opted_out", "unknown"):
            raise _bad("status must be opted_in, opted_out or unknown", path + ".status")
        base = select(ContactConsent.contact_id).where(
            ContactConsent.contact_id == Contact.id, ContactConsent.channel == channel
        )
        if status == "unknown":
            return not_(exists(base.where(ContactConsent.status != "unknown")))
        return exists(base.where(ContactConsent.status == status))
    if kind == "tag":
        ids = _uuids(node.get("tag_ids"), path + ".tag_ids")
        match = node.get("match", "any")
        sub = select(ContactTag.contact_id).where(ContactTag.contact_id == Contact.id)
        if match == "any":
            return exists(sub.where(ContactTag.tag_id.in_(ids)))
        if match == "none":
            return not_(exists(sub.where(ContactTag.tag_id.in_(ids))))
        if match == "all":
            return and_(*[exists(sub.where(ContactTag.tag_id == t)) for t in ids])
        raise _bad("match must be any, all or none", path + ".match")
    if kind == "segment":
        sid = _uuids([node.get("segment_id")], path + ".segment_id")[0]
        return exists(
            select(SegmentMember.contact_id).where(
                SegmentMember.contact_id == Contact.id, SegmentMember.segment_id == sid
            )
        )
    if kind == "event":
        return _event(node, path, now)
    raise _bad("type must be attribute, account, lifecycle, consent, tag, segment or event", path + ".type")


def _event(node: dict[str, Any], path: str, now: dt.datetime) -> ColumnElement[bool]:
    name = node.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("event rules need a name", path + ".name")
    conds: list[CE[bool]] = [ContactEvent.contact_id == Contact.id, ContactEvent.name == name]
    if "within_days" in node:
        days = node["within_days"]
        if not isinstance(days, int) or days <= 0:
            raise _bad("within_days must be a positive integer", path + ".within_days")
        conds.append(ContactEvent.occurred_at >= now - dt.timedelta(days=days))
    if "from" in node:
        conds.append(ContactEvent.occurred_at >= _time(node["from"], path + ".from"))
    if "to" in node:
        conds.append(ContactEvent.occurred_at < _time(node["to"], path + ".to"))
    for i, w in enumerate(node.get("where") or []):
        if not isinstance(w, dict) or not w.get("property"):
            raise _bad("property filter needs 'property'", f"{path}.where[{i}]")
        prop = str(w["property"])
        conds.append(
            _compare(
                lambda v, p=prop: _json_path(ContactEvent.properties, p, v),
                w.get("op", "eq"),
                w.get("value"),
                f"{path}.where[{i}]",
            )
        )
    count_op = node.get("count_op", "gte")
    count = node.get("count", 1)
    if not isinstance(count, int) or count < 0:
        raise _bad("count must be a non-negative integer", path + ".count")
    if count_op not in ("gte", "gt", "lte", "lt", "eq"):
        raise _bad("count_op must be gte, gt, lte, lt or eq", path + ".count_op")
    sub = select(ContactEvent.id).where(*conds)
    counted = select(func.count(ContactEvent.id)).where(*conds)
    # Common shapes become a plain EXISTS so the database can stop at the first row.
    if (count_op == "gte" and count == 1) or (count_op == "gt" and count == 0):
        return exists(sub)
    if (count_op == "lt" and count == 1) or (count_op in ("eq", "lte") and count == 0):
        return not_(exists(sub))
    n = counted.scalar_subquery()
    return {"gte": n >= count, "gt": n > count, "lte": n <= count, "lt": n < count, "eq": n == count}[
        count_op
    ]
