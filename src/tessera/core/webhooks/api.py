"""Webhook endpoints (CRUD, secret rotation) and their deliveries (log, replay)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sqlalchemy import select

from tessera.core.access.principal import Principal
from tessera.core.http.deps import DbSession, require
from tessera.core.http.errors import COMMON_ERRORS, error_responses
from tessera.core.http.listing import FilterField, FilterSet, ListQuery, Page, apply_listing, page_of
from tessera.core.webhooks import service
from tessera.core.webhooks.models import WebhookDelivery, WebhookEndpoint
from tessera.core.webhooks.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    EndpointCreate,
    EndpointCreated,
    EndpointOut,
    EndpointUpdate,
)

router = APIRouter(prefix="/v1", tags=["webhooks"], responses=COMMON_ERRORS)
Admin = Annotated[Principal, Depends(require("admin:webhooks"))]
R404 = error_responses(404)

ENDPOINT_FILTERS = FilterSet(
    fields={"active": FilterField(WebhookEndpoint.active, kind=bool)},
    sortable={"created_at": WebhookEndpoint.created_at},
    id_column=WebhookEndpoint.id,
)
DELIVERY_FILTERS = FilterSet(
    fields={
        "status": FilterField(
            WebhookDelivery.status, choices=("pending", "succeeded", "failed", "cancelled")
        ),
        "event_type": FilterField(WebhookDelivery.event_type),
    },
    sortable={"created_at": WebhookDelivery.created_at, "seq": WebhookDelivery.seq},
    default_sort="-seq",
    id_column=WebhookDelivery.id,
)


@router.post(
    "/webhook-endpoints", response_model=EndpointCreated, status_code=201, responses=error_responses(422)
)
async def create_endpoint(body: EndpointCreate, principal: Admin, session: DbSession) -> EndpointCreated:
    """Create an endpoint. The signing `secret` is in this response only."""
    ep, secret = await service.create_endpoint(session, body)
    return EndpointCreated(**EndpointOut.model_validate(ep).model_dump(), secret=secret)


@router.get("/webhook-endpoints", response_model=Page[EndpointOut])
async def list_endpoints(request: Request, principal: Admin, session: DbSession) -> Page[EndpointOut]:
    q = ListQuery.from_params(request.query_params, ENDPOINT_FILTERS)
    rows = (
        (await session.execute(apply_listing(select(WebhookEndpoint), q, ENDPOINT_FILTERS))).scalars().all()
    )
    items, cursor = page_of(rows, q, ENDPOINT_FILTERS)
    return Page[EndpointOut](items=[EndpointOut.model_validate(e) for e in items], next_cursor=cursor)


@router.get("/webhook-endpoints/{endpoint_id}", response_model=EndpointOut, responses=R404)
async def get_endpoint(endpoint_id: uuid.UUID, principal: Admin, session: DbSession) -> EndpointOut:
    return EndpointOut.model_validate(await service.get_endpoint(session, endpoint_id))


@router.patch(
    "/webhook-endpoints/{endpoint_id}", response_model=EndpointOut, responses=error_responses(404, 422)
)
async def update_endpoint(
    endpoint_id: uuid.UUID, body: EndpointUpdate, principal: Admin, session: DbSession
) -> EndpointOut:
    """Change URL, events or description; `active: true` re-enables a disabled endpoint."""
    return EndpointOut.model_validate(await service.update_endpoint(session, endpoint_id, body))


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=204, responses=R404)
async def delete_endpoint(endpoint_id: uuid.UUID, principal: Admin, session: DbSession) -> None:
    await service.delete_endpoint(session, endpoint_id)


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=EndpointCreated, responses=R404)
async def rotate_secret(endpoint_id: uuid.UUID, principal: Admin, session: DbSession) -> EndpointCreated:
    """Replace the signing secret; the new one is in this response only."""
    ep, secret = await service.rotate_secret(session, endpoint_id)
    return EndpointCreated(**EndpointOut.model_validate(ep).model_dump(), secret=secret)


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", response_model=Page[DeliveryOut], responses=R404)
async def list_deliveries(
    endpoint_id: uuid.UUID, request: Request, principal: Admin, session: DbSession
) -> Page[DeliveryOut]:
    """The endpoint's delivery log, newest first. Filters: `status`, `event_type`."""
    await service.get_endpoint(session, endpoint_id)
    q = ListQuery.from_params(request.query_params, DELIVERY_FILTERS)
    stmt = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    rows = (await session.execute(apply_listing(stmt, q, DELIVERY_FILTERS))).scalars().all()
    items, cursor = page_of(rows, q, DELIVERY_FILTERS)
    return Page[DeliveryOut](items=[DeliveryOut.model_validate(d) for d in items], next_cursor=cursor)


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}", response_model=DeliveryDetail, responses=R404
)
async def get_delivery(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, principal: Admin, session: DbSession
) -> DeliveryDetail:
    """One delivery with its body and every attempt (response code, latency, error)."""
    d = await service.get_delivery(session, endpoint_id, delivery_id)
    out = DeliveryDetail.model_validate(d)
    out.attempt_log = [AttemptOut.model_validate(a) for a in await service.attempts_of(session, d.id)]
    return out


@router.post(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/replay",
    response_model=DeliveryOut,
    status_code=202,
    responses=R404,
)
async def replay_delivery(
    endpoint_id: uuid.UUID, delivery_id: uuid.UUID, principal: Admin, session: DbSession
) -> DeliveryOut:
    """Send a delivery again, as a new delivery queued after the endpoint's pending ones."""
    await service.get_delivery(session, endpoint_id, delivery_id)
    return DeliveryOut.model_validate(await service.replay(session, delivery_id))
