"""SMPP link throughput: our ESME (window 50) against the simulator in another process.

Prints one JSON line:
{"bench":"smsc_raw","messages":N,"seconds":...,"submit_per_s":...,"receipts_per_s":...}
``seconds`` runs from the first submit to the last receipt. Usage: ``python bench/smsc_raw.py [N]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

from tessera.connect.smpp.client import ClientConfig, DeliveryReceipt, SmppClient

WINDOW = 50
WORKERS = 200


async def run(n: int, port: int) -> dict[str, object]:
    received = 0
    all_receipts = asyncio.Event()

    def on_receipt(_: DeliveryReceipt) -> None:
        nonlocal received
        received += 1
        if received == n:
            all_receipts.set()

    client = SmppClient(
        ClientConfig("127.0.0.1", port, "tessera", "secret", window=WINDOW),
        on_receipt=on_receipt,
    )
    await client.start(timeout=10)
    counter = iter(range(n))
    failures = 0

    async def worker() -> None:
        nonlocal failures
        for i in counter:
            result = await client.submit("TESSERA", f"8613{i:09d}", f"bench message {i}")
            failures += not result.ok

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(WORKERS)))
    submitted = time.perf_counter() - start
    await asyncio.wait_for(all_receipts.wait(), 120)
    total = time.perf_counter() - start
    await client.close()
    if failures:
        raise SystemExit(f"{failures} submits failed")
    return {
        "bench": "smsc_raw",
        "messages": n,
        "seconds": round(total, 3),
        "submit_per_s": round(n / submitted, 1),
        "receipts_per_s": round(n / total, 1),
    }


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 50_000
    smsc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tessera.connect.smpp.server",
            "--port",
            "0",
            "--no-keep-messages",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert smsc.stdout is not None
        port = json.loads(smsc.stdout.readline())["port"]
        print(json.dumps(asyncio.run(run(n, port))))
    finally:
        smsc.terminate()
        smsc.wait(10)


if __name__ == "__main__":
    main()
