"""Events of the messaging pipeline.

``message.status`` is published by the dispatcher (:mod:`tessera.connect.dispatcher`) in the
transaction that records a final status (delivered, failed, expired, rejected); payload
``{"message_id", "status", "reason"}``. Webhook endpoints subscribe to it by name.
"""

from __future__ import annotations

MESSAGE_STATUS = "message.status"
EVENTS = (MESSAGE_STATUS,)
