"""Verification API (CON-7): start, check, resend, read, statistics per template."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from tessera.connect.verify import service, tasks  # noqa: F401  (tasks registers the job handlers)
from tessera.connect.verify.errors import VerifyInvalid
from tessera.connect.verify.schemas import CheckIn, CheckOut, TemplateStats, VerifyIn, VerifyOut
from tessera.core.access.principal import Principal
from tessera.core.db.base import utcnow
from tessera.core.http.deps import DbSession, require
from tessera.core.http.errors import COMMON_ERRORS, error_responses

router = APIRouter(prefix="/v1", tags=["verify"], responses=COMMON_ERRORS)
Sender = Annotated[Principal, Depends(require("messages:send"))]
Reader = Annotated[Principal, Depends(require("messages:read"))]


@router.post(
    "/verify",
    response_model=VerifyOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(422, 429),
)
async def start(data: VerifyIn, principal: Sender, session: DbSession) -> VerifyOut:
    """Send a code; SMS falls back to a voice call when not delivered in ``fallback_after_seconds``."""
    return VerifyOut.model_validate(await service.start(session, data))


@router.post(
    "/verify/{verification_id}/check", response_model=CheckOut, responses=error_responses(404, 422, 429)
)
async def check(verification_id: uuid.UUID, data: CheckIn, principal: Sender, session: DbSession) -> CheckOut:
    r = await service.check(session, verification_id, data.code)
    return CheckOut(id=r.id, status="approved" if r.approved else "denied", checks_left=r.checks_left)


@router.post(
    "/verify/{verification_id}/resend", response_model=VerifyOut, responses=error_responses(404, 409, 429)
)
async def resend(verification_id: uuid.UUID, principal: Sender, session: DbSession) -> VerifyOut:
    return VerifyOut.model_validate(await service.resend(session, verification_id))


@router.get("/verify/stats", response_model=list[TemplateStats])
async def stats(
    principal: Reader,
    session: DbSession,
    since: Annotated[dt.datetime | None, Query()] = None,
    until: Annotated[dt.datetime | None, Query()] = None,
) -> list[TemplateStats]:
    """Per template: sent, delivered, approved, conversion rate and time to delivery (default: 7 days)."""
    until = until or utcnow() + dt.timedelta(seconds=1)
    since = since or until - dt.timedelta(days=7)
    if since.tzinfo is None or until.tzinfo is None:
        raise VerifyInvalid("since/until need a time zone", field="since", rule="timezone_required")
    return await service.stats(session, since, until)


@router.get("/verify/{verification_id}", response_model=VerifyOut, responses=error_responses(404))
async def get(verification_id: uuid.UUID, principal: Reader, session: DbSession) -> VerifyOut:
    return VerifyOut.model_validate(await service.get(session, verification_id))
