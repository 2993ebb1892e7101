"""Compliance API: word lists, block/allow/empty lists, opt-outs, settings, dry-run check,
review queue (``compliance:manage``) and the operator's global lists."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, status

from tessera.connect.compliance import service
from tessera.connect.compliance.models import ComplianceSettings, ListEntry, OptOut
from tessera.connect.compliance.schemas import (
    CheckIn,
    DecisionIn,
    DecisionOut,
    EntryIn,
    EntryOut,
    HitOut,
    ListKind,
    OptOutIn,
    OptOutOut,
    ReviewOut,
    SettingsIn,
    SettingsOut,
    WordIn,
    WordOut,
)
from tessera.core.access.principal import OperatorPrincipal, Principal
from tessera.core.db.session import unit_of_work
from tessera.core.http.deps import DbSession, require, require_operator
from tessera.core.http.errors import COMMON_ERRORS, error_responses

router = APIRouter(prefix="/v1", tags=["compliance"], responses=COMMON_ERRORS)
Manager = Annotated[Principal, Depends(require("compliance:manage"))]
Operator = Annotated[OperatorPrincipal, Depends(require_operator)]
E404 = error_responses(404)


def _entry_out(e: ListEntry) -> EntryOut:
    return EntryOut(
        id=e.id, list=e.list_kind, kind=e.kind, note=e.note, created_at=e.created_at, **{e.kind: e.value}
    )


def _opt_out_out(o: OptOut) -> OptOutOut:
    kind = "email" if "@" in o.address else "phone"
    return OptOutOut(
        id=o.id, channel=o.channel, source=o.source, created_at=o.created_at, **{kind: o.address}
    )


def _minutes_to_hhmm(m: int | None) -> str | None:
    return None if m is None else f"{m // 60:02d}:{m % 60:02d}"


def _settings_out(s: ComplianceSettings) -> SettingsOut:
    return SettingsOut(
        quiet_start=_minutes_to_hhmm(s.quiet_start),
        quiet_end=_minutes_to_hhmm(s.quiet_end),
        cap_count=s.cap_count,
        cap_window_hours=s.cap_window_hours or 24,
        opt_out_keywords=list(s.opt_out_keywords or []),
        opt_out_reply=s.opt_out_reply or "",
    )


@router.get("/compliance/words", response_model=list[WordOut])
async def list_words(principal: Manager, session: DbSession, category: str | None = None) -> list[WordOut]:
    return [WordOut.model_validate(w) for w in await service.list_words(session, category)]


@router.post(
    "/compliance/words",
    response_model=WordOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422),
)
async def add_word(data: WordIn, principal: Manager, session: DbSession) -> WordOut:
    row = await service.add_word(session, **data.model_dump())
    return WordOut.model_validate(row)


@router.delete("/compliance/words/{word_id}", status_code=status.HTTP_204_NO_CONTENT, responses=E404)
async def delete_word(word_id: uuid.UUID, principal: Manager, session: DbSession) -> None:
    await service.delete_word(session, word_id)


@router.get("/compliance/lists/{list_kind}", response_model=list[EntryOut])
async def list_entries(list_kind: ListKind, principal: Manager, session: DbSession) -> list[EntryOut]:
    return [_entry_out(e) for e in await service.list_entries(session, list_kind)]


@router.post(
    "/compliance/lists/{list_kind}",
    response_model=EntryOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422),
)
async def add_entry(list_kind: ListKind, data: EntryIn, principal: Manager, session: DbSession) -> EntryOut:
    return _entry_out(await service.add_entry(session, list_kind=list_kind, value=data.value, note=data.note))


@router.delete("/compliance/list-entries/{entry_id}", status_code=status.HTTP_204_NO_CONTENT, responses=E404)
async def delete_entry(entry_id: uuid.UUID, principal: Manager, session: DbSession) -> None:
    await service.delete_entry(session, entry_id)


@router.get("/compliance/opt-outs", response_model=list[OptOutOut])
async def list_opt_outs(
    principal: Manager, session: DbSession, channel: str | None = None
) -> list[OptOutOut]:
    return [_opt_out_out(o) for o in await service.list_opt_outs(session, channel)]


@router.post(
    "/compliance/opt-outs",
    response_model=OptOutOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(422),
)
async def add_opt_out(data: OptOutIn, principal: Manager, session: DbSession) -> OptOutOut:
    return _opt_out_out(
        await service.opt_out(session, channel=data.channel, address=data.address, source="api")
    )


@router.delete("/compliance/opt-outs/{opt_out_id}", status_code=status.HTTP_204_NO_CONTENT, responses=E404)
async def remove_opt_out(opt_out_id: uuid.UUID, principal: Manager, session: DbSession) -> None:
    await service.remove_opt_out(session, opt_out_id)


@router.get("/compliance/settings", response_model=SettingsOut)
async def get_settings(principal: Manager, session: DbSession) -> SettingsOut:
    return _settings_out(await service.get_settings(session))


@router.patch("/compliance/settings", response_model=SettingsOut, responses=error_responses(422))
async def update_settings(data: SettingsIn, principal: Manager, session: DbSession) -> SettingsOut:
    changes: dict[str, Any] = data.model_dump(exclude_unset=True)
    for key in ("quiet_start", "quiet_end"):
        if key in changes and changes[key] is not None:
            h, m = changes[key].split(":")
            changes[key] = int(h) * 60 + int(m)
    return _settings_out(await service.update_settings(session, changes))


@router.post("/compliance/check", response_model=DecisionOut, responses=error_responses(422))
async def check(data: CheckIn, principal: Manager, session: DbSession) -> DecisionOut:
    """Dry run of the check the pipeline makes before accepting a message."""
    d = await service.check_outbound(
        session,
        channel=data.channel,
        message_class=data.message_class,
        to_e164_or_email=data.to,
        body=data.body,
        now=data.now,
    )
    return DecisionOut(
        verdict=d.verdict,
        code=d.code,
        message=d.message,
        replaced_body=d.replaced_body,
        not_before=d.not_before,
        hits=[
            HitOut(word=h.word, category=h.category, action=str(h.action), start=h.start, end=h.end)
            for h in d.hits
        ],
    )


@router.get("/compliance/reviews", response_model=list[ReviewOut])
async def list_reviews(
    principal: Manager, session: DbSession, status: str | None = "pending"
) -> list[ReviewOut]:
    return [ReviewOut.model_validate(r) for r in await service.list_reviews(session, status or None)]


@router.get("/compliance/reviews/{review_id}", response_model=ReviewOut, responses=E404)
async def get_review(review_id: uuid.UUID, principal: Manager, session: DbSession) -> ReviewOut:
    return ReviewOut.model_validate(await service.get_review(session, review_id))


@router.post(
    "/compliance/reviews/{review_id}/approve", response_model=ReviewOut, responses=error_responses(404, 409)
)
async def approve_review(
    review_id: uuid.UUID, principal: Manager, session: DbSession, data: DecisionIn | None = None
) -> ReviewOut:
    """Approve: the message is released into the messaging pipeline."""
    row = await service.decide_review(session, review_id, "approved", data.note if data else None)
    return ReviewOut.model_validate(row)


@router.post(
    "/compliance/reviews/{review_id}/reject", response_model=ReviewOut, responses=error_responses(404, 409)
)
async def reject_review(
    review_id: uuid.UUID, principal: Manager, session: DbSession, data: DecisionIn | None = None
) -> ReviewOut:
    row = await service.decide_review(session, review_id, "rejected", data.note if data else None)
    return ReviewOut.model_validate(row)


@router.post(
    "/operator/compliance/words",
    tags=["operator"],
    response_model=WordOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409, 422),
)
async def add_global_word(data: WordIn, operator: Operator) -> WordOut:
    async with unit_of_work(platform=True) as s:
        row = await service.add_global_word(s, **data.model_dump())
        return WordOut.model_validate(row)


@router.post(
    "/operator/compliance/lists/{list_kind}",
    tags=["operator"],
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(422),
)
async def add_global_entry(list_kind: ListKind, data: EntryIn, operator: Operator) -> dict[str, str]:
    async with unit_of_work(platform=True) as s:
        row = await service.add_global_entry(s, list_kind=list_kind, value=data.value, note=data.note)
        return {"id": str(row.id), "list": row.list_kind, "kind": row.kind}
