"""The SMPP client and the SMSC simulator run on uvloop (what ``tessera serve`` uses), whose
transports are not subclasses of ``asyncio.Transport``."""

from __future__ import annotations

import asyncio

import uvloop

from tessera.connect.smpp.client import BindState, ClientConfig, SmppClient
from tessera.connect.smpp.server import SmscAccount, SmscConfig, SmscSimulator


async def _round_trip() -> tuple[bool, str]:
    smsc = SmscSimulator(SmscConfig(accounts=[SmscAccount("tessera", "secret")], receipt_delay=0.01))
    await smsc.start()
    client = SmppClient(
        ClientConfig(host="127.0.0.1", port=smsc.port, system_id="tessera", password="secret")
    )
    try:
        await client.start(timeout=5)
        assert client.state is BindState.BOUND
        result = await client.submit("TESSERA", "+8613800138000", "uvloop")
        receipt = await asyncio.wait_for(anext(client.receipts()), 5)
        return result.ok, receipt.stat
    finally:
        await client.close()
        await smsc.stop()


def test_submit_and_receipt_on_uvloop() -> None:
    ok, stat = uvloop.run(_round_trip())
    assert ok and stat == "DELIVRD"
