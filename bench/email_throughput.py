"""Benchmark: personalised emails through the pooled SMTP link into the local SMTP sink.

Runs the same workload without and with DKIM (OpenSSL-backed RSA step) and prints one JSON
line. The sink runs in a child process (in a thread of this process, the GIL hand-off between
the busy sender loop and the sink costs up to the 5 ms switch interval per SMTP reply); the
sender is one asyncio loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import time
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

from tessera.connect.email.compose import compose_email
from tessera.connect.email.dkim import DkimKey, DkimSigner, generate_key_pair
from tessera.connect.email.sender import SmtpConfig, SmtpLink
from tessera.connect.email.sink import SmtpSink, _free_port


def _messages(count: int) -> list[tuple[int, str]]:
    return [(i, f"user{i}@example.org") for i in range(count)]


async def _run(port: int, count: int, pool: int, signer: DkimSigner | None) -> tuple[float, int]:
    queue = _messages(count)
    accepted = 0

    async with SmtpLink(SmtpConfig("127.0.0.1", port, pool_size=pool), signer=signer) as link:

        async def worker(items: list[tuple[int, str]]) -> None:
            nonlocal accepted
            for i, to in items:
                msg = compose_email(
                    sender="News <news@example.com>",
                    to=to,
                    subject=f"Your November offers, customer {i}",
                    text=f"Hello customer {i},\n\nYour points balance is {i * 7 % 10000}.\n",
                    html=f"<html><body><p>Hello customer <b>{i}</b>,</p><p>Points: {i * 7 % 10000}</p></body></html>",
                    unsubscribe_mailto="unsub@example.com",
                    unsubscribe_url=f"https://example.com/u/{i}",
                    tracking_id=f"t{i}",
                )
                result = await link.send(msg)
                accepted += result.accepted

        start = time.perf_counter()
        await asyncio.gather(*(worker(queue[w::pool]) for w in range(pool)))
        return time.perf_counter() - start, accepted


def _sink_process(port: int, counter: Synchronized[int], ready: Event, stop: Event) -> None:
    sink = SmtpSink(port=port, keep_in_memory=False)
    with sink:
        ready.set()
        while not stop.wait(0.05):
            counter.value = sink.count
        counter.value = sink.count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--emails", type=int, default=20_000)
    parser.add_argument("--pool", type=int, default=8)
    args = parser.parse_args()
    private, _ = generate_key_pair(2048)
    signer = DkimSigner(DkimKey("s1", "example.com", private))
    results: dict[str, float | int] = {}
    for label, use in (("no_dkim", None), ("dkim", signer)):
        port = _free_port("127.0.0.1")
        counter: Synchronized[int] = mp.Value("q", 0)  # type: ignore[assignment]
        ready, stop = mp.Event(), mp.Event()
        child = mp.Process(target=_sink_process, args=(port, counter, ready, stop), daemon=True)
        child.start()
        ready.wait(10)
        seconds, accepted = asyncio.run(_run(port, args.emails, args.pool, use))
        results[f"{label}_accepted"] = accepted
        stop.set()
        child.join(10)
        results[f"{label}_seconds"] = round(seconds, 3)
        results[f"{label}_emails_per_s"] = round(args.emails / seconds)
        results[f"{label}_received"] = int(counter.value)
    print(
        json.dumps(
            {
                "bench": "email_throughput",
                "emails": args.emails,
                "pool_size": args.pool,
                "emails_per_s": results["no_dkim_emails_per_s"],
                **results,
            }
        )
    )


if __name__ == "__main__":
    main()
