"""Errors of inbound messaging (stable codes)."""

from __future__ import annotations

from tessera.core.http.errors import Conflict, NotFound


class InboundNotFound(NotFound):
    """The inbound message does not exist."""

    code = "inbound.not_found"


class RuleNotFound(NotFound):
    """The auto-reply rule does not exist."""

    code = "inbound.rule_not_found"


class DuplicateRule(Conflict):
    """A rule with this keyword already exists."""

    code = "inbound.duplicate_rule"
