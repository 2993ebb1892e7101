"""The SMPP client's per-message shortcuts: a single-part text's encoding reused, and a receipt
whose handler returns a future acknowledged by a callback when it is done (no task each)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from tessera.connect import encoding
from tessera.connect.smpp import client as C
from tessera.connect.smpp.client import DeliveryReceipt, SmppClient
from tessera.connect.smpp.server import SmscSimulator

SmscFactory = Callable[..., Awaitable[SmscSimulator]]
ClientFactory = Callable[..., SmppClient]


def test_single_part_encoding_reused_long_text_not() -> None:
    C._ENCODED.clear()
    short = C._encode("Your parcel is on its way", None, None)
    assert C._encode("Your parcel is on its way", None, None) is short
    assert short == encoding.encode_message("Your parcel is on its way")
    assert C._encode("Your parcel is on its way", encoding.DATA_CODING_UCS2, None) == encoding.encode_message(
        "Your parcel is on its way", encoding.DATA_CODING_UCS2
    )
    long = "x" * 200  # two parts: each message its own concatenation reference
    first, second = C._encode(long, None, None), C._encode(long, None, None)
    assert len(first.payloads) == 2 and first.reference != second.reference
    assert (long, None) not in C._ENCODED
    assert C._encode(long, None, 7).reference == 7
    with pytest.raises(ValueError):
        C._encode("x", 3, None)  # an unsupported data_coding raises as before
    for i in range(C._ENCODED_MAX + 10):
        C._encode(f"code {i}", None, None)
    assert len(C._ENCODED) <= C._ENCODED_MAX


@pytest.mark.asyncio
async def test_receipt_acked_when_its_future_is_done(
    make_smsc: SmscFactory, make_client: ClientFactory
) -> None:
    smsc = await make_smsc()
    futures: list[asyncio.Future[None]] = []

    def handler(_: DeliveryReceipt) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        futures.append(fut)
        return fut

    client = make_client(smsc, on_receipt=handler)
    await client.start(timeout=5)
    assert (await client.submit("TESSERA", "8613800000000", "x")).ok
    assert (await client.submit("TESSERA", "8613800000001", "y")).ok
    for _ in range(100):
        if len(futures) == 2:
            break
        await asyncio.sleep(0.01)
    assert len(futures) == 2 and not client._tasks  # no task per receipt
    await asyncio.sleep(0.1)
    assert smsc.stats_.receipts_acked == 0  # not before the handler is done
    futures[0].set_result(None)
    futures[1].set_exception(RuntimeError("db down"))
    for _ in range(100):
        if smsc.stats_.receipts_acked == 2:
            break
        await asyncio.sleep(0.01)
    assert smsc.stats_.receipts_acked == 2
    assert "db down" in client.last_error
    # the failed one was answered ESME_RX_T_APPN: the SMSC delivers it again (after 0.5 s)
    for _ in range(200):
        if len(futures) == 3:
            break
        await asyncio.sleep(0.01)
    assert len(futures) == 3 and smsc.stats_.receipts_sent == 2


@pytest.mark.asyncio
async def test_send_now_writes_at_once_or_not_at_all(
    make_smsc: SmscFactory, make_client: ClientFactory
) -> None:
    smsc = await make_smsc()
    client = make_client(smsc, window=1)
    assert client.send_now("TESSERA", "8613800000000", "x") is None  # not bound
    await client.start(timeout=5)
    sent = client.send_now("TESSERA", "8613800000000", "Your code is 1234")
    assert sent is not None and client.stats.submit_sm_sent == 1 and not client._out  # written
    assert client.send_now("TESSERA", "8613800000001", "y") is None  # the window (1) is taken
    result = await client.finish(sent)
    assert result.ok and result.message_id in smsc.by_id
    assert smsc.by_id[result.message_id].short_message == encoding.encode_gsm7("Your code is 1234")
    assert client._window._value == 1  # given back
    assert client.send_now("TESSERA", "8613800000001", "x" * 200) is None  # two parts
    assert client._window._value == 1 and client.stats.submit_sm_sent == 1
    limited = make_client(smsc, system_id="other", password="pw2", tps=100.0)
    await limited.start(timeout=5)
    assert limited.send_now("TESSERA", "8613800000002", "z") is None  # a rate limit: submit()


@pytest.mark.asyncio
async def test_send_now_throttled_answer_submitted_again(
    make_smsc: SmscFactory, make_client: ClientFactory
) -> None:
    smsc = await make_smsc()
    client = make_client(smsc, throttle_backoff_initial=0.01)
    await client.start(timeout=5)
    smsc.set_tps("tessera", 1.0)
    first = await client.submit("TESSERA", "8613800000000", "a")  # the one token of this second
    assert first.ok
    sent = client.send_now("TESSERA", "8613800000001", "b")  # throttled, then again in ~1 s
    assert sent is not None
    result = await asyncio.wait_for(client.finish(sent), 10)
    assert result.ok and client.stats.throttled >= 1
    assert smsc.count("TESSERA", "8613800000001", encoding.encode_gsm7("b")) == 1
