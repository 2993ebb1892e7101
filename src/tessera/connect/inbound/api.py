"""Inbound API (CON-10): inbound messages, MO hand-over for HTTP carriers, auto-reply rules."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from tessera.connect.inbound import service
from tessera.connect.inbound.schemas import InboundOut, MoIn, RuleIn, RuleOut
from tessera.core.access.principal import Principal
from tessera.core.http.deps import DbSession, require
from tessera.core.http.errors import COMMON_ERRORS, error_responses

router = APIRouter(prefix="/v1/inbound", tags=["inbound"], responses=COMMON_ERRORS)
Reader = Annotated[Principal, Depends(require("messages:read"))]
Manager = Annotated[Principal, Depends(require("channels:manage"))]


@router.get("/messages", response_model=list[InboundOut], response_model_by_alias=True)
async def list_messages(principal: Reader, session: DbSession) -> list[InboundOut]:
    return [InboundOut.model_validate(m) for m in await service.list_messages(session)]


@router.post(
    "/messages",
    response_model=InboundOut,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(422),
)
async def receive(data: MoIn, principal: Manager, session: DbSession) -> InboundOut:
    """Hand over one MO received by an HTTP carrier adapter (SMPP MO arrive via the gateway)."""
    m = await service.handle_mo(session, source=data.source, dest=data.destination, text=data.text)
    return InboundOut.model_validate(m)


@router.get("/messages/{message_id}", response_model=InboundOut, responses=error_responses(404))
async def get_message(message_id: uuid.UUID, principal: Reader, session: DbSession) -> InboundOut:
    return InboundOut.model_validate(await service.get_message(session, message_id))


@router.get("/rules", response_model=list[RuleOut])
async def list_rules(principal: Manager, session: DbSession) -> list[RuleOut]:
    return [RuleOut.model_validate(r) for r in await service.list_rules(session)]


@router.post(
    "/rules", response_model=RuleOut, status_code=status.HTTP_201_CREATED, responses=error_responses(409, 422)
)
async def create_rule(data: RuleIn, principal: Manager, session: DbSession) -> RuleOut:
    return RuleOut.model_validate(await service.create_rule(session, data.model_dump()))


@router.delete("/rules/{rule_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404))
async def delete_rule(rule_id: uuid.UUID, principal: Manager, session: DbSession) -> None:
    await service.delete_rule(session, rule_id)
