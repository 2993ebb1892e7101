"""The audit log: filters, detail with before/after, CSV export through the API endpoint."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends
from fastapi.responses import Response
from sqlalchemy import select

from tessera.console.components import Column, ListPage
from tessera.console.i18n import _
from tessera.console.registry import NavItem, register_nav
from tessera.console.web import PREFIX, Page, console_router, page
from tessera.core.audit.api import AUDIT_FILTERS
from tessera.core.audit.models import AuditEvent
from tessera.core.http.errors import NotFound

router = console_router("/admin")
Auditor = Annotated[Page, Depends(page("audit:read"))]

register_nav(NavItem("admin.audit", "Audit log", f"{PREFIX}/admin/audit", "audit:read", "admin", order=50))


def audit_list() -> ListPage:
    return ListPage(
        key="admin.audit",
        title=_("Audit log"),
        filterset=AUDIT_FILTERS,
        export=False,
        columns=[
            Column("seq", "#", sortable=True, link=True, kind="mono", hide_on_phone=True),
            Column("created_at", _("Time"), sortable=True, kind="datetime"),
            Column("actor_label", _("Actor")),
            Column("action", _("Action"), link=True, kind="mono"),
            Column(
                "object_type",
                _("Object"),
                value=lambda e: f"{e.object_type} {e.object_id or ''}".strip(),
                hide_on_phone=True,
            ),
        ],
        row_href=lambda e: f"{PREFIX}/admin/audit/{e.id}",
        options={
            "actor_type": [
                ("user", "user"),
                ("api_key", "api_key"),
                ("operator", "operator"),
                ("system", "system"),
            ]
        },
        labels={
            "object_type": _("Object type"),
            "object_id": _("Object id"),
            "actor_type": _("Actor type"),
            "actor_id": _("Actor id"),
            "created_at": _("Time"),
        },
        search_param="action__contains",
        empty_text=_("No audit entries match these filters."),
    )


@router.get("/audit")
async def audit_log(pg: Auditor) -> Response:
    lst = audit_list()
    result = await lst.run(pg, select(AuditEvent))
    export = "/v1/audit-events/export" + lst.current_query(result).replace("?", "?", 1)
    return lst.respond(pg, result, template="console/admin/audit.html", export_url=export)


@router.get("/audit/{event_id}")
async def audit_detail(event_id: uuid.UUID, pg: Auditor) -> Response:
    row = (await pg.session.execute(select(AuditEvent).where(AuditEvent.id == event_id))).scalar_one_or_none()
    if row is None:
        raise NotFound()
    changes = []
    other = {}
    for key, value in (row.changes or {}).items():
        if isinstance(value, list) and len(value) == 2:
            changes.append((key, value[0], value[1]))
        else:
            other[key] = value
    return pg.render("console/admin/audit_event.html", ev=row, changes=changes, other=other)
