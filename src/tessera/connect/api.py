"""Messaging API: send (one, batch), read, preview, templates, signatures, channels, links, routes."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, status

from tessera.connect import encoding
from tessera.connect.errors import MessageInvalid
from tessera.connect.schemas import (
    Accepted,
    BatchAccepted,
    BatchIn,
    ChannelIn,
    ChannelOut,
    ChannelPatch,
    LinkIn,
    LinkOut,
    LinkPatch,
    MessageDetail,
    MessageEventOut,
    MessageIn,
    MessageOut,
    PreviewIn,
    PreviewOut,
    RecipientResult,
    RejectIn,
    RouteIn,
    RouteOut,
    RoutePatch,
    SignatureIn,
    SignatureOut,
    TemplateIn,
    TemplateOut,
    TemplatePatch,
)
from tessera.connect.service import channels, search, send, templates
from tessera.core.access import permissions
from tessera.core.access.principal import Principal
from tessera.core.http.deps import DbSession, require
from tessera.core.http.errors import COMMON_ERRORS, error_responses
from tessera.core.http.listing import Page

router = APIRouter(prefix="/v1", tags=["messages"], responses=COMMON_ERRORS)

Reader = Annotated[Principal, Depends(require("messages:read"))]
Sender = Annotated[Principal, Depends(require("messages:send"))]
Manager = Annotated[Principal, Depends(require("channels:manage"))]
# approving is not writing: the console's template pages register and use the same permission
APPROVE = permissions.register("channels:approve", "Approve or reject message templates and signatures")
Approver = Annotated[Principal, Depends(require(APPROVE))]


# --- messages ---------------------------------------------------------------------------------


@router.post(
    "/messages", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted, responses=error_responses(422)
)
async def send_one(data: MessageIn, principal: Sender, session: DbSession) -> Accepted:
    """Accept one message; 202 once it is durably stored with status ``accepted``."""
    m = await send.send_message(session, data)
    return Accepted(
        id=m.id,
        status=m.status,
        segments=m.segments,
        encoding=m.encoding,
        code=m.code,
        scheduled_at=m.not_before,
    )


@router.post(
    "/messages/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchAccepted,
    responses=error_responses(422),
)
async def send_many(data: BatchIn, principal: Sender, session: DbSession) -> BatchAccepted:
    """Accept up to 10,000 recipients with per-recipient variables. Invalid input refuses the whole
    batch (422); a recipient refused by compliance is stored ``rejected`` and listed in ``results``."""
    out = await send.send_batch(session, data)
    return BatchAccepted(
        count=len(out),
        ids=[m.id for m in out],
        accepted=sum(1 for m in out if m.status == "accepted"),
        held=sum(1 for m in out if m.status == "held"),
        rejected=sum(1 for m in out if m.status == "rejected"),
        results=[
            RecipientResult(
                index=i,
                id=m.id,
                status=m.status,
                code=m.code,
                field=m.field,
                message=m.message,
                scheduled_at=m.not_before,
            )
            for i, m in enumerate(out)
            if m.code is not None
        ],
    )


@router.post("/messages/preview", response_model=PreviewOut, responses=error_responses(404, 422))
async def preview(data: PreviewIn, principal: Sender, session: DbSession) -> PreviewOut:
    """Render a body or template and tell its encoding and segment count."""
    body = data.body
    if data.template_id is not None:
        t = await templates.get(session, data.template_id)
        body = t.bodies.get(data.channel)
        if body is None:
            raise MessageInvalid(
                f"the template has no {data.channel} body",
                field="template_id",
                rule="template_channel_missing",
            )
    if body is None or not body.strip():
        raise MessageInvalid("the message body is empty", field="body", rule="required")
    text = templates.render(body, data.variables)
    if data.signature:
        text = f"【{data.signature.strip('【】')}】" + text
    pv = encoding.preview(text)
    return PreviewOut(
        text=text,
        encoding=pv["encoding"],
        segments=pv["segments"],
        characters=pv["characters"],
        parts=pv["parts"],
    )


@router.get("/messages", response_model=Page[MessageOut])
async def list_messages(request: Request, principal: Reader, session: DbSession) -> Page[MessageOut]:
    """Messages, newest first; filters ``status``, ``channel``, ``to``, ``created_at__gte/lte``,
    ``campaign_id``, ``reference``; keyset ``cursor``."""
    items, cursor = await search.list_messages(session, request.query_params)
    return Page[MessageOut](items=[MessageOut.model_validate(m) for m in items], next_cursor=cursor)


@router.get("/messages/{message_id}", response_model=MessageDetail, responses=error_responses(404))
async def get_message(message_id: uuid.UUID, principal: Reader, session: DbSession) -> MessageDetail:
    m, events = await search.get_message(session, message_id)
    out = MessageDetail.model_validate(m)
    out.events = [MessageEventOut.model_validate(e) for e in events]
    return out


# --- templates --------------------------------------------------------------------------------


@router.get("/templates", response_model=list[TemplateOut], tags=["templates"])
async def list_templates(principal: Reader, session: DbSession) -> list[TemplateOut]:
    return [TemplateOut.model_validate(t) for t in await templates.list_all(session)]


@router.post(
    "/templates",
    status_code=201,
    response_model=TemplateOut,
    tags=["templates"],
    responses=error_responses(422),
)
async def create_template(data: TemplateIn, principal: Manager, session: DbSession) -> TemplateOut:
    return TemplateOut.model_validate(await templates.create(session, data))


@router.get(
    "/templates/{template_id}", response_model=TemplateOut, tags=["templates"], responses=error_responses(404)
)
async def get_template(template_id: uuid.UUID, principal: Reader, session: DbSession) -> TemplateOut:
    return TemplateOut.model_validate(await templates.get(session, template_id))


@router.patch(
    "/templates/{template_id}",
    response_model=TemplateOut,
    tags=["templates"],
    responses=error_responses(404, 409, 422),
)
async def update_template(
    template_id: uuid.UUID, data: TemplatePatch, principal: Manager, session: DbSession
) -> TemplateOut:
    return TemplateOut.model_validate(await templates.update(session, template_id, data))


@router.delete(
    "/templates/{template_id}", status_code=204, tags=["templates"], responses=error_responses(404)
)
async def delete_template(template_id: uuid.UUID, principal: Manager, session: DbSession) -> None:
    await templates.delete(session, template_id)


@router.post(
    "/templates/{template_id}/submit",
    response_model=TemplateOut,
    tags=["templates"],
    responses=error_responses(404, 409),
)
async def submit_template(template_id: uuid.UUID, principal: Manager, session: DbSession) -> TemplateOut:
    return TemplateOut.model_validate(await templates.transition(session, template_id, "submit"))


@router.post(
    "/templates/{template_id}/approve",
    response_model=TemplateOut,
    tags=["templates"],
    responses=error_responses(404, 409),
)
async def approve_template(template_id: uuid.UUID, principal: Approver, session: DbSession) -> TemplateOut:
    return TemplateOut.model_validate(await templates.transition(session, template_id, "approve"))


@router.post(
    "/templates/{template_id}/reject",
    response_model=TemplateOut,
    tags=["templates"],
    responses=error_responses(404, 409, 422),
)
async def reject_template(
    template_id: uuid.UUID, data: RejectIn, principal: Approver, session: DbSession
) -> TemplateOut:
    return TemplateOut.model_validate(await templates.transition(session, template_id, "reject", data.reason))


# --- signatures -------------------------------------------------------------------------------


@router.get("/signatures", response_model=list[SignatureOut], tags=["templates"])
async def list_signatures(principal: Reader, session: DbSession) -> list[SignatureOut]:
    return [SignatureOut.model_validate(s) for s in await channels.list_signatures(session)]


@router.post(
    "/signatures",
    status_code=201,
    response_model=SignatureOut,
    tags=["templates"],
    responses=error_responses(409, 422),
)
async def create_signature(data: SignatureIn, principal: Manager, session: DbSession) -> SignatureOut:
    return SignatureOut.model_validate(await channels.create_signature(session, data))


@router.post(
    "/signatures/{signature_id}/approve",
    response_model=SignatureOut,
    tags=["templates"],
    responses=error_responses(404),
)
async def approve_signature(signature_id: uuid.UUID, principal: Approver, session: DbSession) -> SignatureOut:
    return SignatureOut.model_validate(await channels.review_signature(session, signature_id, True))


@router.post(
    "/signatures/{signature_id}/reject",
    response_model=SignatureOut,
    tags=["templates"],
    responses=error_responses(404),
)
async def reject_signature(signature_id: uuid.UUID, principal: Approver, session: DbSession) -> SignatureOut:
    return SignatureOut.model_validate(await channels.review_signature(session, signature_id, False))


# --- channels, links, routes ------------------------------------------------------------------


@router.get("/channels", response_model=list[ChannelOut], tags=["channels"])
async def list_channels(principal: Manager, session: DbSession) -> list[ChannelOut]:
    return [ChannelOut.model_validate(c) for c in await channels.list_channels(session)]


@router.post(
    "/channels", status_code=201, response_model=ChannelOut, tags=["channels"], responses=error_responses(422)
)
async def create_channel(data: ChannelIn, principal: Manager, session: DbSession) -> ChannelOut:
    return ChannelOut.model_validate(await channels.create_channel(session, data))


@router.get(
    "/channels/{channel_id}", response_model=ChannelOut, tags=["channels"], responses=error_responses(404)
)
async def get_channel(channel_id: uuid.UUID, principal: Manager, session: DbSession) -> ChannelOut:
    return ChannelOut.model_validate(await channels.get_channel(session, channel_id))


@router.patch(
    "/channels/{channel_id}",
    response_model=ChannelOut,
    tags=["channels"],
    responses=error_responses(404, 422),
)
async def update_channel(
    channel_id: uuid.UUID, data: ChannelPatch, principal: Manager, session: DbSession
) -> ChannelOut:
    return ChannelOut.model_validate(await channels.update_channel(session, channel_id, data))


@router.get(
    "/channels/{channel_id}/links",
    response_model=list[LinkOut],
    tags=["channels"],
    responses=error_responses(404),
)
async def list_links(channel_id: uuid.UUID, principal: Manager, session: DbSession) -> list[LinkOut]:
    return [LinkOut.model_validate(x) for x in await channels.list_links(session, channel_id)]


@router.post(
    "/channels/{channel_id}/links",
    status_code=201,
    response_model=LinkOut,
    tags=["channels"],
    responses=error_responses(404, 422),
)
async def create_link(channel_id: uuid.UUID, data: LinkIn, principal: Manager, session: DbSession) -> LinkOut:
    return LinkOut.model_validate(await channels.create_link(session, channel_id, data))


@router.get("/links/{link_id}", response_model=LinkOut, tags=["channels"], responses=error_responses(404))
async def get_link(link_id: uuid.UUID, principal: Manager, session: DbSession) -> LinkOut:
    return LinkOut.model_validate(await channels.get_link(session, link_id))


@router.patch(
    "/links/{link_id}", response_model=LinkOut, tags=["channels"], responses=error_responses(404, 422)
)
async def update_link(link_id: uuid.UUID, data: LinkPatch, principal: Manager, session: DbSession) -> LinkOut:
    return LinkOut.model_validate(await channels.update_link(session, link_id, data))


@router.delete("/links/{link_id}", status_code=204, tags=["channels"], responses=error_responses(404))
async def delete_link(link_id: uuid.UUID, principal: Manager, session: DbSession) -> None:
    await channels.delete_link(session, link_id)


@router.get(
    "/channels/{channel_id}/routes",
    response_model=list[RouteOut],
    tags=["channels"],
    responses=error_responses(404),
)
async def list_routes(channel_id: uuid.UUID, principal: Manager, session: DbSession) -> list[RouteOut]:
    return [RouteOut.model_validate(r) for r in await channels.list_routes(session, channel_id)]


@router.post(
    "/channels/{channel_id}/routes",
    status_code=201,
    response_model=RouteOut,
    tags=["channels"],
    responses=error_responses(404, 422),
)
async def add_route(channel_id: uuid.UUID, data: RouteIn, principal: Manager, session: DbSession) -> RouteOut:
    return RouteOut.model_validate(await channels.add_route(session, channel_id, data))


@router.get("/routes/{route_id}", response_model=RouteOut, tags=["channels"], responses=error_responses(404))
async def get_route(route_id: uuid.UUID, principal: Manager, session: DbSession) -> RouteOut:
    return RouteOut.model_validate(await channels.get_route(session, route_id))


@router.patch(
    "/routes/{route_id}", response_model=RouteOut, tags=["channels"], responses=error_responses(404, 422)
)
async def update_route(
    route_id: uuid.UUID, data: RoutePatch, principal: Manager, session: DbSession
) -> RouteOut:
    """Change a route; the gateway uses it for the next message (a miss reloads the table)."""
    return RouteOut.model_validate(await channels.update_route(session, route_id, data))


@router.delete("/routes/{route_id}", status_code=204, tags=["channels"], responses=error_responses(404))
async def delete_route(route_id: uuid.UUID, principal: Manager, session: DbSession) -> None:
    await channels.delete_route(session, route_id)
