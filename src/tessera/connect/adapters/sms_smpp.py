"""SMS over SMPP: the mapping between pipeline statuses and SMPP results / delivery receipts.

The link itself is :class:`tessera.connect.smpp.client.SmppClient`; the dispatcher's link runner
drives it. This module holds the stable reason codes the API exposes."""

from __future__ import annotations

from tessera.connect.smpp.common import DeliveryReceipt

RECEIPT_STATUS = {"DELIVRD": "delivered", "EXPIRED": "expired"}
RECEIPT_REASON = {
    "UNDELIV": "carrier.undeliverable",
    "REJECTD": "carrier.rejected",
    "DELETED": "carrier.deleted",
    "UNKNOWN": "carrier.unknown",
    "EXPIRED": "carrier.expired",
}


def submit_rejection_reason(status: int | None) -> str:
    """``smpp.status_0x000b`` for a submit_sm answered with ESME_RINVDSTADR, and so on."""
    return f"smpp.status_{status or 0:#06x}"


def receipt_outcome(receipt: DeliveryReceipt) -> tuple[str, str | None]:
    """(status, reason) of one part's receipt."""
    stat = receipt.stat.upper()
    if stat == "DELIVRD":
        return "delivered", None
    status = RECEIPT_STATUS.get(stat, "failed")
    reason = RECEIPT_REASON.get(stat, "carrier.failed")
    if status == "failed" and receipt.error:
        reason = f"{reason}.{receipt.error}"
    return status, reason
