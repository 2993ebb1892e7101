from __future__ import annotations

from tessera.core.http.errors import InvalidInput, NotFound


class EndpointNotFound(NotFound):
    """The webhook endpoint does not exist."""

    code = "webhook.endpoint_not_found"


class DeliveryNotFound(NotFound):
    """The webhook delivery does not exist."""

    code = "webhook.delivery_not_found"


class UnsafeWebhookUrl(InvalidInput):
    """The webhook URL is not an acceptable destination."""

    code = "webhook.unsafe_url"
