"""Benchmark: personalised emails end to end — POST /v1/messages/batch → gateway → SMTP sink.

20,000 emails by default (batches of 10,000, each recipient with its own name and points in the
subject, text and HTML) through the real path: the API in this process (in-process ASGI), a
gateway in its own process (``run_gateway``: claim, EmailRunner — MIME rendering, DKIM, pooled
SMTP — and batched status writes), and the aiosmtpd sink in a third process. Run twice: an
email channel without DKIM, then one with DKIM (RSA-2048, rsa-sha256, relaxed/relaxed).

Before that, the sender alone (render + sign + SMTP over the same pool, no database) as a
reference of what the SMTP side can do. Prints ONE JSON line; the rates of the pipeline are
delivered (final status written) per second from the first request to the last final status.

``--db sqlite`` (a fresh file) or ``--db postgres`` (a fresh database, as bench/sms_throughput).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
import uuid
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sms_throughput import _cpu_of, _drop_db, _postgres_cpu, prepare_environment  # noqa: E402

SUBJECT = "{{name}}, your November offers"
TEXT = "Hello {{name}},\n\nYour points balance is {{points}}.\nSee you soon.\n"
HTML = "<html><body><p>Hello <b>{{name}}</b>,</p><p>Your points balance is {{points}}.</p></body></html>"


def _start_sink() -> tuple[int, Any, Any, Synchronized[int]]:
    from tessera.connect.email.sink import _free_port

    port = _free_port("127.0.0.1")
    counter: Synchronized[int] = mp.Value("q", 0)  # type: ignore[assignment]
    ready, stop = mp.Event(), mp.Event()
    child = mp.Process(target=_counting_sink, args=(port, counter, ready, stop), daemon=True)
    child.start()
    if not ready.wait(20):
        raise SystemExit("the SMTP sink did not start")
    return port, child, stop, counter


def _counting_sink(port: int, counter: Synchronized[int], ready: Event, stop: Event) -> None:
    from tessera.connect.email.sink import SmtpSink

    sink = SmtpSink(port=port, keep_in_memory=False)
    with sink:
        ready.set()
        while not stop.wait(0.2):
            counter.value = sink.count
        counter.value = sink.count


async def _sender_only(port: int, count: int, pool: int, private_pem: bytes | None) -> float:
    from tessera.connect.email.compose import render_email
    from tessera.connect.email.dkim import DkimKey, RelaxedDkimSigner
    from tessera.connect.email.sender import SmtpConfig, SmtpLink

    signer = RelaxedDkimSigner(DkimKey("s1", "example.com", private_pem)) if private_pem else None
    async with SmtpLink(SmtpConfig("127.0.0.1", port, pool_size=pool)) as link:

        async def worker(start: int) -> None:
            for i in range(start, count, pool * 2):
                raw = render_email(
                    sender="News <news@example.com>",
                    to=f"user{i}@example.org",
                    subject=f"Customer {i}, your November offers",
                    text=f"Hello customer {i},\n\nYour points balance is {i * 7 % 10000}.\n",
                    html=f"<html><body><p>Hello <b>customer {i}</b></p><p>{i * 7 % 10000}</p></body></html>",
                    message_id=f"<{uuid.uuid4().hex}@example.com>",
                    unsubscribe_mailto="unsub@example.com",
                    unsubscribe_url=f"https://example.com/u/{i}",
                )
                if signer is not None:
                    raw = signer.sign(raw)
                result = await link.send(
                    raw, sender="bounces@example.com", recipients=[f"user{i}@example.org"]
                )
                assert result.accepted, result

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(pool * 2)))
        return count / (time.perf_counter() - t0)


async def _counts(tenant_id: uuid.UUID, channel_id: uuid.UUID) -> dict[str, int]:
    from sqlalchemy import func, select

    from tessera.connect.models import Message
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(tenant_id):
        async with unit_of_work() as s:
            rows = (
                await s.execute(
                    select(Message.status, func.count())
                    .where(Message.channel_id == channel_id)
                    .group_by(Message.status)
                )
            ).all()
    return {k: int(v) for k, v in rows}


async def _pipeline(
    args: argparse.Namespace,
    client: Any,
    headers: dict[str, str],
    world: Any,
    label: str,
    settings: dict[str, Any],
    secret: str | None,
    sink_counter: Synchronized[int],
) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "email", "name": label, "settings": settings}
    if secret:
        body["secret"] = secret
    r = await client.post("/v1/channels", json=body, headers=headers)
    assert r.status_code == 201, r.text
    ch = r.json()["id"]
    before = int(sink_counter.value)
    t0 = time.monotonic()
    accept_s = 0.0
    for b in range(0, args.emails, args.batch):
        rec = [
            {
                "to": f"user{b + i}@example.org",
                "variables": {"name": f"Customer {b + i}", "points": str((b + i) * 7)},
            }
            for i in range(min(args.batch, args.emails - b))
        ]
        ts = time.monotonic()
        r = await client.post(
            "/v1/messages/batch",
            json={
                "channel": "email",
                "channel_id": ch,
                "class": "marketing",
                "subject": SUBJECT,
                "body": TEXT,
                "html": HTML,
                "recipients": rec,
            },
            headers=headers,
        )
        accept_s += time.monotonic() - ts
        assert r.status_code == 202, r.text[:500]
    timeline: list[list[float]] = []
    while True:
        st = await _counts(world.tenant_id, uuid.UUID(ch))
        done = sum(st.get(k, 0) for k in ("delivered", "failed", "expired", "rejected"))
        timeline.append([round(time.monotonic() - t0, 2), done])
        if done >= args.emails:
            break
        if time.monotonic() - t0 > args.timeout:
            raise SystemExit(f"timeout: {st}")
        await asyncio.sleep(0.5)
    total = time.monotonic() - t0
    await asyncio.sleep(0.5)  # the sink publishes its count every 0.2 s
    return {
        f"{label}_delivered_per_s": round(args.emails / total, 1),
        f"{label}_accepted_per_s": round(args.emails / accept_s, 1),
        f"{label}_total_s": round(total, 2),
        f"{label}_statuses": st,
        f"{label}_sink_received": int(sink_counter.value) - before,
        f"{label}_sustained_per_s": _sustained(timeline, args.emails),
    }


async def _gateway_up() -> bool:
    from sqlalchemy import func, select

    from tessera.connect.models import GatewayHeartbeat
    from tessera.core import context
    from tessera.core.db.session import unit_of_work

    with context.tenant_scope(None):
        async with unit_of_work(platform=True) as s:
            return bool((await s.execute(select(func.count()).select_from(GatewayHeartbeat))).scalar_one())


def _sustained(timeline: list[list[float]], n: int) -> float | None:
    lo = next((p for p in timeline if p[1] >= 0.1 * n), None)
    hi = next((p for p in timeline if p[1] >= 0.9 * n), None)
    if lo is None or hi is None or hi[0] <= lo[0]:
        return None
    return round((hi[1] - lo[1]) / (hi[0] - lo[0]), 1)


async def _run(
    args: argparse.Namespace, port: int, sink_counter: Synchronized[int], private: bytes, sink_pid: int
) -> dict[str, Any]:
    import httpx
    from tests.conftest import make_tenant

    from tessera.app import create_app
    from tessera.settings import Settings, reset_settings_cache

    reset_settings_cache()
    app = create_app(Settings())
    world = await make_tenant("bench", roles=("admin",))
    h = world.headers("admin")
    settings = {
        "host": "127.0.0.1",
        "port": port,
        "from": "News <news@example.com>",
        "bounce_address": "bounces@example.com",
        "unsubscribe_mailto": "unsub@example.com",
        "unsubscribe_url": "https://example.com/u/{message_id}",
        "pool_size": args.pool,
        "concurrency": args.concurrency,
    }
    code = "from tessera.cli import run_service; from tessera.connect.gateway import run_gateway; run_service(run_gateway())"
    if os.environ.get("BENCH_PROFILE"):
        code = f"import cProfile; cProfile.run({code!r}, {os.environ['BENCH_PROFILE']!r})"
    gw = subprocess.Popen([sys.executable, "-c", code], env={**os.environ}, cwd=ROOT)
    out: dict[str, Any] = {}
    started = time.monotonic()
    while not await _gateway_up():  # its start-up (imports, first heartbeat) is not throughput
        if gw.poll() is not None or time.monotonic() - started > 120:
            raise SystemExit("the gateway did not start")
        await asyncio.sleep(0.2)
    out["gateway_start_s"] = round(time.monotonic() - started, 1)
    pg0 = _postgres_cpu()
    me0 = time.process_time()
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=600
        ) as client:

            def cpu() -> dict[str, float]:
                return {
                    "gateway": _cpu_of(gw.pid),
                    "api": time.process_time(),
                    "sink": _cpu_of(sink_pid),
                    "postgres": _postgres_cpu() if args.db == "postgres" else 0.0,
                }

            def per_email(a: dict[str, float], b: dict[str, float]) -> dict[str, float | None]:
                # a server process that exits takes its CPU time with it: None rather than < 0
                return {k: round(1000 * (b[k] - a[k]) / args.emails, 3) if b[k] >= a[k] else None for k in a}

            cpu0 = cpu()
            out |= await _pipeline(args, client, h, world, "no_dkim", settings, None, sink_counter)
            cpu1 = cpu()
            secret = json.dumps({"dkim_private_key": private.decode()})
            out |= await _pipeline(
                args, client, h, world, "dkim", {**settings, "dkim_selector": "s1"}, secret, sink_counter
            )
            cpu2 = cpu()
            # CPU per email of each process: what the pipeline costs, whatever the machine's load
            # (postgres: every local server process, so other work on the server counts too)
            out["no_dkim_gateway_cpu_ms_per_email"] = round(
                1000 * (cpu1["gateway"] - cpu0["gateway"]) / args.emails, 3
            )
            out["dkim_gateway_cpu_ms_per_email"] = round(
                1000 * (cpu2["gateway"] - cpu1["gateway"]) / args.emails, 3
            )
            out["no_dkim_cpu_ms_per_email"] = per_email(cpu0, cpu1)
            out["dkim_cpu_ms_per_email"] = per_email(cpu1, cpu2)
        out["cpu_s"] = {
            "gateway": round(_cpu_of(gw.pid), 1),
            "api": round(time.process_time() - me0, 1),
            "postgres": round(_postgres_cpu() - pg0, 1) if args.db == "postgres" else None,
        }
    finally:
        gw.terminate()
        gw.wait(timeout=30)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--emails", type=int, default=20_000)
    p.add_argument("--batch", type=int, default=10_000)
    p.add_argument("--pool", type=int, default=8, help="SMTP connections of the channel")
    p.add_argument("--concurrency", type=int, default=64, help="emails in progress in the gateway")
    p.add_argument("--sender-emails", type=int, default=5_000, help="emails of the sender-only reference")
    p.add_argument("--timeout", type=float, default=900)
    args = p.parse_args()

    from tessera.connect.email.dkim import generate_key_pair

    private, _ = generate_key_pair(2048)
    port, sink, stop, counter = _start_sink()
    result: dict[str, Any] = {
        "bench": "email_throughput",
        "db": args.db,
        "emails": args.emails,
        "pool_size": args.pool,
        "concurrency": args.concurrency,
    }
    try:
        if args.sender_emails:
            for label, key in (("no_dkim", None), ("dkim", private)):
                me0, sink0 = time.process_time(), _cpu_of(sink.pid or 0)
                rate = asyncio.run(_sender_only(port, args.sender_emails, args.pool, key))
                result[f"sender_only_{label}_per_s"] = round(rate)
                result[f"sender_only_{label}_cpu_ms_per_email"] = {
                    "sender": round(1000 * (time.process_time() - me0) / args.sender_emails, 3),
                    "sink": round(1000 * (_cpu_of(sink.pid or 0) - sink0) / args.sender_emails, 3),
                }
        data_dir = tempfile.mkdtemp(prefix="tessera-bench-")
        pg_name = prepare_environment(args.db, data_dir)
        sys.path.insert(0, str(ROOT))
        try:
            result |= asyncio.run(_run(args, port, counter, private, sink.pid or 0))
        finally:
            if pg_name:
                _drop_db(pg_name)
    finally:
        stop.set()
        sink.join(10)
    result["emails_per_s"] = result.get("no_dkim_delivered_per_s")
    result["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
