"""Record visibility by ownership: own, team, department subtree, all."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, select, true
from sqlalchemy.orm import InstrumentedAttribute

from tessera.core.access.principal import Principal
from tessera.core.identity.models import Department, TeamMember, User


def visible_owner_clause(
    owner_column: InstrumentedAttribute[Any], principal: Principal, object_type: str
) -> ColumnElement[bool]:
    """A WHERE clause restricting ``owner_column`` to owners the principal may see."""
    scope = principal.scope_for(object_type)
    if scope == "all" or principal.user_id is None:
        return true() if scope == "all" else owner_column.is_(None)
    if scope == "team" and principal.team_ids:
        members = select(TeamMember.user_id).where(TeamMember.team_id.in_(principal.team_ids))
        return owner_column.in_(members) | (owner_column == principal.user_id)
    if scope == "department" and principal.department_path:
        subtree = (
            select(User.id)
            .join(Department, User.department_id == Department.id)
            .where(Department.path.startswith(principal.department_path))
        )
        return owner_column.in_(subtree) | (owner_column == principal.user_id)
    return owner_column == principal.user_id
