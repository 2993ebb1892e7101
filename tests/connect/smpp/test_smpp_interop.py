"""The simulator against third-party peers: smpplib's synchronous client and raw garbage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import smpplib.client  # type: ignore[import-untyped]
import smpplib.consts  # type: ignore[import-untyped]

from tessera.connect.smpp import pdu as P
from tessera.connect.smpp.server import SmscSimulator

SmscFactory = Callable[..., Awaitable[SmscSimulator]]

pytestmark = pytest.mark.asyncio


def _smpplib_session(port: int) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    client = smpplib.client.Client("127.0.0.1", port, timeout=5, allow_unknown_opt_params=True)
    client.set_message_sent_handler(lambda pdu: seen.__setitem__("message_id", pdu.message_id.decode()))

    def received(pdu: Any) -> None:
        seen["receipt_id"] = pdu.receipted_message_id.decode()
        seen["state"] = pdu.message_state
        seen["text"] = pdu.short_message.decode()
        seen["esm_class"] = pdu.esm_class

    client.set_message_received_handler(received)
    client.connect()
    try:
        client.bind_transceiver(system_id="tessera", password="secret")
        client.send_message(
            source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
            source_addr="INTEROP",
            dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
            destination_addr="8613800138000",
            short_message=b"hello from smpplib",
            registered_delivery=1,
        )
        while "receipt_id" not in seen:
            client.read_once()
        seen["unbind"] = client.unbind().command
    finally:
        client.disconnect()
    return seen


async def test_smpplib_client_interoperates(make_smsc: SmscFactory) -> None:
    smsc = await make_smsc()
    seen = await asyncio.wait_for(asyncio.to_thread(_smpplib_session, smsc.port), 15)
    assert seen["message_id"] and seen["receipt_id"] == seen["message_id"]
    assert seen["state"] == P.STATE_DELIVERED and seen["esm_class"] == 0x04
    assert f"id:{seen['message_id']} sub:001 dlvrd:001" in seen["text"]
    assert "stat:DELIVRD err:000 text:hello from smpplib" in seen["text"]
    assert seen["unbind"] == "unbind_resp"
    assert smsc.count("INTEROP", "8613800138000", b"hello from smpplib") == 1
    assert smsc.stats_.receipts_acked == 1 and smsc.stats_.unbinds == 1


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(4096), 2)
    finally:
        writer.close()


async def test_generic_nack_for_garbage(make_smsc: SmscFactory) -> None:
    smsc = await make_smsc()
    unknown = P.HEADER.pack(16, 0x00000777, 0, 9)
    answer = await _exchange(smsc.port, unknown)
    assert P.HEADER.unpack(answer[:16]) == (16, P.GENERIC_NACK, P.ESME_RINVCMDID, 9)
    answer = await _exchange(smsc.port, b"\x00\x00\x00\x03garbage!garbage!")
    assert P.HEADER.unpack(answer[:16]) == (16, P.GENERIC_NACK, P.ESME_RINVCMDLEN, 0)
    assert smsc.stats_.generic_nacks == 2


async def test_submit_before_bind_is_refused(make_smsc: SmscFactory) -> None:
    smsc = await make_smsc()
    raw = P.build("submit_sm", 5, source_addr="A", destination_addr="1", short_message=b"x")
    answer = await _exchange(smsc.port, raw)
    _, command_id, status, seq = P.HEADER.unpack(answer[:16])
    assert (command_id, status, seq) == (P.SUBMIT_SM | P.RESP, P.ESME_RINVBNDSTS, 5)
    assert smsc.stats_.submits == 0
